"""What is true of CounterFact's new objects: the answers of the composed probes in
``derive_counterfact.py``.

The shared data has no knowledge base for the objects CounterFact moves subjects to (MQuAKE's
triples cover 9 of the 173 composable records in CounterFact 0-399, and name no city's country),
so this table is hand-written from general knowledge (Wikidata's values, with the names a
reader would accept as the same answer). It is written for the objects of CounterFact 0-399
and read only to score probes: derivation never sees it (it asks the unedited model).
Places whose country is ambiguous or disputed (Victoria, Prescott, Chelsea, Guam,
Constantinople, Jerusalem) are left out, so their records are not used.
"""

from __future__ import annotations

US = ("United States", "United States of America", "USA")
UK = ("United Kingdom", "UK", "Britain", "Great Britain")
ENGLAND = (UK[0], "England", *UK[1:])
SCOTLAND = (UK[0], "Scotland", *UK[1:])
WALES = (UK[0], "Wales", *UK[1:])
NORTHERN_IRELAND = (UK[0], "Northern Ireland", *UK[1:])

#: Place -> its country (the first name is the canonical one, the others are accepted too).
COUNTRY_OF: dict[str, tuple[str, ...]] = {
    "Amsterdam": ("Netherlands", "Holland"), "Arizona": US, "Athens": ("Greece",),
    "Auckland": ("New Zealand",), "Baltimore": US, "Barcelona": ("Spain",), "Beirut": ("Lebanon",),
    "Belfast": NORTHERN_IRELAND, "Belgium": ("Belgium",), "Berlin": ("Germany",), "Birmingham": ENGLAND,
    "Boston": US, "Brisbane": ("Australia",), "Budapest": ("Hungary",), "Calgary": ("Canada",),
    "California": US, "Cardiff": WALES, "Charlotte": US, "Chicago": US, "Detroit": US,
    "Dublin": ("Ireland", "Republic of Ireland"), "Edinburgh": SCOTLAND, "Edmonton": ("Canada",),
    "Egypt": ("Egypt",), "Florence": ("Italy",), "Hamburg": ("Germany",), "Houston": US,
    "Iceland": ("Iceland",), "Illinois": US, "Jakarta": ("Indonesia",), "Leicester": ENGLAND,
    "London": ENGLAND, "Madrid": ("Spain",), "Medina": ("Saudi Arabia",), "Miami": US,
    "Minneapolis": US, "Moscow": ("Russia",), "Munich": ("Germany",), "Nevada": US,
    "Nottingham": ENGLAND, "Ontario": ("Canada",), "Ottawa": ("Canada",), "Oxford": ENGLAND,
    "Paris": ("France",), "Pennsylvania": US, "Philadelphia": US, "Providence": US,
    "Quebec": ("Canada",), "Rome": ("Italy",), "Sacramento": US, "Santiago": ("Chile",), "Seattle": US,
    "Shanghai": ("China",), "Sheffield": ENGLAND, "Singapore": ("Singapore",), "Somerset": ENGLAND,
    "Swansea": WALES, "Tokyo": ("Japan",), "Toronto": ("Canada",), "Tucson": US,
    "Vancouver": ("Canada",), "Venice": ("Italy",), "Vienna": ("Austria",), "Wales": WALES,
    "Warsaw": ("Poland",), "Warwick": ENGLAND, "Wellington": ("New Zealand",),
}

#: Country -> continent, capital and official language(s).
CONTINENT: dict[str, tuple[str, ...]] = {
    "Australia": ("Oceania", "Australia"), "Egypt": ("Africa",), "Germany": ("Europe",),
    "Greece": ("Europe",), "India": ("Asia",), "Ireland": ("Europe",), "Italy": ("Europe",),
    "Libya": ("Africa",), "Mexico": ("North America",), "Norway": ("Europe",), "Poland": ("Europe",),
    "Spain": ("Europe",),
}
CAPITAL: dict[str, tuple[str, ...]] = {
    "Albania": ("Tirana",), "Australia": ("Canberra",), "Belgium": ("Brussels",), "Canada": ("Ottawa",),
    "Cyprus": ("Nicosia",), "Denmark": ("Copenhagen",), "France": ("Paris",), "India": ("New Delhi", "Delhi"),
    "Ireland": ("Dublin",), "Italy": ("Rome",), "Latvia": ("Riga",), "Netherlands": ("Amsterdam",),
    "Norway": ("Oslo",), "Spain": ("Madrid",), "Sudan": ("Khartoum",),
}
LANGUAGE: dict[str, tuple[str, ...]] = {
    "Albania": ("Albanian",), "Australia": ("English",), "Belgium": ("Dutch", "French", "German"),
    "Canada": ("English", "French"), "Cyprus": ("Greek", "Turkish"), "Denmark": ("Danish",),
    "France": ("French",), "India": ("Hindi", "English"), "Ireland": ("Irish", "English"),
    "Italy": ("Italian",), "Japan": ("Japanese",), "Latvia": ("Latvian",), "Netherlands": ("Dutch",),
    "Norway": ("Norwegian",), "Philippines": ("Filipino", "English"), "Poland": ("Polish",),
    "Spain": ("Spanish",), "Sudan": ("Arabic", "English"), "Sweden": ("Swedish",),
}

#: CounterFact relation -> (table, composed probe). The probes are worded unlike the shipped
#: rules' relations (``specs/rules/world.kedit``), so a derived edit helps only if it carries.
COMPOSED: dict[str, tuple[tuple[dict[str, tuple[str, ...]], str], ...]] = {
    "P17": ((CONTINENT, "The continent on which {subject} lies is"),),
    "P27": ((CAPITAL, "{subject} is a citizen of a country whose capital is"),
            (LANGUAGE, "The official language of the country {subject} is a citizen of is")),
    "P495": ((LANGUAGE, "{subject} comes from a country whose official language is"),),
    "P19": ((COUNTRY_OF, "{subject} was born in a place in the country of"),),
    "P20": ((COUNTRY_OF, "{subject} died in a place in the country of"),),
    "P937": ((COUNTRY_OF, "{subject} worked in a place in the country of"),),
    "P740": ((COUNTRY_OF, "{subject} was founded in a place in the country of"),),
    "P159": ((COUNTRY_OF, "The headquarters of {subject} are in a place in the country of"),),
    "P131": ((COUNTRY_OF, "The country where {subject} is located is"),),
    "P276": ((COUNTRY_OF, "The country where {subject} is located is"),),
}


def composed_probes(relation: str, subject: str, new_object: str) -> list[tuple[str, tuple[str, ...]]]:
    """The composed questions about ``subject`` after it moves to ``new_object``, each with
    its accepted answers (empty when the relation does not compose or the object is not known)."""
    out = []
    for table, template in COMPOSED.get(relation, ()):
        answers = table.get(new_object)
        if answers:
            out.append((template.format(subject=subject), answers))
    return out
