"""Wikidata relation ids for zsRE's questions, read from their wording.

zsRE records carry no relation id, only a question ("What label was responsible for
{subject}?"); its 1,037 portability records use 512 distinct wordings of about 60
Wikidata relations. The shipped rules (``specs/rules/world.kedit``) are keyed by those
ids, so the importer names each question's relation with this table and the rules
apply to imported zsRE edits as they do to CounterFact's.

The table is an ordered list of (id, pattern): the first pattern found in the
question (lower-cased, subject written ``{subject}``) names the relation; a question
no pattern matches keeps its own prompt and no relation. More specific patterns come
first (a "programming language" before a "language", a "noble family" before a
taxon's "family"). Written from the question wordings alone, never from answers or
portability probes.
"""

from __future__ import annotations

import re

#: (Wikidata id, pattern) in the order they are tried.
TABLE: tuple[tuple[str, str], ...] = (
    # people: birth, death, family
    ("P569", r"date of birth|birth date|when was {subject} born|when was the birth of"),
    ("P570", r"date of death|when did {subject} die|year {subject} died|death occur|death of {subject} occured"
             r"|life of {subject} end|date did {subject} die|when was {subject}'s death|death date"),
    ("P509", r"cause of death|caused {subject}'s death|led to {subject}'s death|killed|how did {subject} die"
             r"|disease did {subject} die|accident or suicide|die of"),
    ("P1050", r"illness|medical condition|disease"),
    ("P25", r"mother|lady gave birth|lady {subject} was born to"),
    ("P20", r"die\b|died|death"),
    ("P19", r"born|birthplace|city of birth|place of birth"),
    ("P22", r"father|\bdad\b|male parent|paternal"),
    ("P26", r"spouse|married"),
    ("P3373", r"sister|brother|sibling"),
    ("P21", r"gender|male or female|which sex"),
    ("P172", r"ethnic group"),
    ("P97", r"noble title"),
    ("P53", r"noble family|family lineage"),
    ("P103", r"native tongue|mother tongue|native language"),
    ("P27", r"citizen|what country is {subject} from|country {subject} is from|country does {subject} belong"
            r"|country for {subject}|where was {subject} from"),
    ("P495", r"country of origin"),
    ("P69", r"college|university|educated"),
    ("P108", r"employment|study or work|employer"),
    ("P106", r"occupation|career"),
    ("P412", r"voice|vocal|range|tone does {subject} sing"),
    ("P413", r"position on the field|position did {subject} play|player position|position on the field"),
    ("P39", r"position"),
    ("P607", r"\bwar\b|conflict|battle|combatant"),
    # sport
    ("P118", r"league"),
    ("P115", r"stadium|home games"),
    ("P54", r"team|play for|played for|plays for"),
    # works and organisations
    ("P264", r"label"),
    ("P123", r"publisher|published|publicised"),
    ("P449", r"network|channel|aired|air on"),
    ("P272", r"production company|studio"),
    ("P750", r"distribut|released by|company released|who released {subject}\?"),
    ("P57", r"director|directed|helmed|directing|direction"),
    ("P161", r"cast|stars of|the star\b|acted|featured in"),
    ("P175", r"performer|performed|artist released|song {subject} (?:is|was) by"),
    ("P870", r"instrument"),
    ("P84", r"architect"),
    ("P287", r"design"),
    ("P176", r"manufactur|company (?:made|makes|built|produced)|corporation (?:was {subject} )?created|assembled"),
    ("P178", r"developed|developer"),
    ("P170", r"creator|created|artwork|illustrat|who is {subject} by|the movie {subject} is by"),
    ("P749", r"parent company|what company is {subject} part of"),
    ("P452", r"industry"),
    ("P1056", r"product does"),
    ("P277", r"programming language"),
    ("P407", r"language"),
    ("P1441", r"fictional work|work of fiction|piece of fiction|work does {subject} appear|appearance of {subject}"),
    ("P1080", r"fictional universe"),
    ("P179", r"series"),
    ("P138", r"named after|named for"),
    ("P1411", r"nominated"),
    ("P186", r"material|made of"),
    ("P275", r"license"),
    # time
    ("P571", r"incept|year was {subject} made|year is {subject} associated|when was {subject} found|founded"
             r"|established|formed|formation|originate|come into being|came into being"),
    ("P576", r"dissolve|ceased|abolished|final year|ending year|end of {subject}|did {subject} end"
             r"|year did {subject} end|expire"),
    ("P729", r"enter service|entered service|service entry|come into use|introduced|commissioned"),
    ("P575", r"discover"),
    ("P619", r"launch"),
    ("P585", r"point in time|when did {subject} occurr?|happened|date of {subject}"),
    # nature and places
    ("P141", r"endangered|conservation|iucn|status of"),
    ("P703", r"species"),
    ("P171", r"family|genus"),
    ("P59", r"constellation"),
    ("P376", r"astronomical body|celestial body|planet"),
    ("P206", r"body of water"),
    ("P403", r"tributary|flow into|river does {subject} (?:connect|turn)"),
    ("P177", r"cross"),
    ("P113", r"airline hub"),
    ("P931", r"town or city does {subject} serve"),
    ("P289", r"vessel|aquatic unit|submarine"),
    ("P740", r"city is the band"),
    ("P131", r"\bstate\b|which place|place is {subject} in|place does {subject} exist|city is {subject}"
             r"|home city"),
    ("P30", r"continent"),
    ("P17", r"country was {subject} in"),
    ("P276", r"place where|location|where .*located|airport"),
)

_COMPILED = tuple((pid, re.compile(pattern.replace("{subject}", re.escape("{subject}")))) for pid, pattern in TABLE)


def relation_id(template: str) -> str | None:
    """The Wikidata id of a zsRE question written with ``{subject}``, or None if no pattern fits."""
    question = template.lower()
    for pid, pattern in _COMPILED:
        if pattern.search(question):
            return pid
    return None
