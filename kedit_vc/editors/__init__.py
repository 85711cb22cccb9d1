"""Editing methods: one folder per method, found through ``registry``; ``common`` is shared machinery."""
