"""Seeded, fast, realistic synthetic people for samples, benchmarks and end-to-end tests.

Rows are flat dicts of ``str`` values, as a CSV or JSON source would deliver them. Generation
runs in chunks of ``_CHUNK`` rows: random draws are vectorised with numpy, strings are assembled
per chunk, and writers stream chunk by chunk, so a million rows never sit in memory at once.
Output depends only on ``n`` and the :class:`SampleOptions` (seed included).
"""

from __future__ import annotations

import csv
import operator
import random
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

FIELDS: tuple[str, ...] = (
    "id", "first_name", "last_name", "email", "phone", "company", "job_title", "street", "city",
    "postcode", "country", "birth_date", "newsletter", "updated_at", "person_key",
)  # fmt: skip
_CHUNK = 10_000
_DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SampleOptions:
    """Knobs for the generator; equal options and ``n`` give identical output."""

    seed: int = 42
    duplicate_rate: float = 0.0  # share of rows that are variant copies of an earlier person
    invalid_rate: float = 0.0  # share of rows broken on purpose, each in one way
    id_prefix: str = "p"  # external ids look like f"{id_prefix}{n:07d}"
    start: datetime = _DEFAULT_START  # updated_at values spread over a year from here

    def __post_init__(self) -> None:
        if not 0.0 <= self.duplicate_rate < 1.0:
            raise ValueError("duplicate_rate must be in [0, 1)")
        if not 0.0 <= self.invalid_rate <= 1.0:
            raise ValueError("invalid_rate must be in [0, 1]")


DEFAULT_OPTIONS = SampleOptions()


class Country(NamedTuple):
    """Per-country data: spellings, codes, phone plan, web and company conventions."""

    names: tuple[str, ...]  # full-name spellings seen in the wild; the first is canonical
    alpha3: str
    calling_code: str
    trunk: str  # national trunk prefix ("" where the country has none)
    mobile: tuple[str, ...]  # national-number prefixes of mobile ranges that validate
    mobile_digits: int  # random digits after a mobile prefix
    mobile_area: int  # digits shown as the first group when formatting
    tld: str
    mail: tuple[str, ...]  # local free-mail providers
    suffixes: tuple[str, ...]  # legal forms of companies


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words; "_" stands for a space inside one entry."""
    return tuple(word.replace("_", " ") for word in text.split())


def _fold(text: str) -> str:
    """Lower-case ASCII letters only: "Björn O'Brien" -> "bjornobrien"."""
    text = text.replace("ß", "ss").replace("ø", "o").replace("\u0131", "i").replace("ł", "l")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in text if "a" <= ch <= "z")


# fmt: off
COUNTRIES: dict[str, Country] = {
    "GB": Country(("United Kingdom", "UK", "Great Britain"), "GBR", "44", "0",
                  ("7400", "7412", "7456", "7712", "7723", "7766", "7788", "7800", "7900"), 6, 4,
                  "co.uk", ("btinternet.com", "sky.com", "yahoo.co.uk"),
                  ("Ltd", "Ltd.", "PLC", "LLP")),
    "US": Country(("United States", "United States of America"), "USA", "1", "", (), 0, 3,
                  "com", ("comcast.net", "att.net", "verizon.net"), ("Inc.", "LLC", "Corp.")),
    "DE": Country(("Germany", "Deutschland"), "DEU", "49", "0",
                  ("151", "152", "157", "160", "162", "170", "171", "172", "175", "176", "179"),
                  8, 3, "de", ("gmx.de", "web.de", "t-online.de"), ("GmbH", "AG", "GmbH & Co. KG")),
    "FR": Country(("France",), "FRA", "33", "0",
                  ("60", "61", "62", "64", "65", "66", "67", "68", "73", "75", "76", "77", "78"),
                  7, 1,
                  "fr", ("orange.fr", "free.fr", "laposte.net"), ("SAS", "SARL", "SA")),
    "ES": Country(("Spain", "España"), "ESP", "34", "",
                  ("60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "71"), 7, 3,
                  "es", ("telefonica.net", "yahoo.es", "hotmail.es"), ("S.L.", "S.A.")),
    "NL": Country(("Netherlands", "The Netherlands", "Nederland"), "NLD", "31", "0",
                  ("61", "62", "63", "64", "65", "68"), 7, 1,
                  "nl", ("ziggo.nl", "kpnmail.nl", "planet.nl"), ("B.V.", "N.V.")),
    "IE": Country(("Ireland", "Éire"), "IRL", "353", "0", ("83", "85", "86", "87", "89"), 7, 2,
                  "ie", ("eircom.net", "yahoo.ie"), ("Ltd", "Limited", "DAC")),
    "IT": Country(("Italy", "Italia"), "ITA", "39", "",
                  ("320", "328", "333", "338", "340", "347", "348", "349", "366", "380", "392"),
                  7, 3, "it", ("libero.it", "virgilio.it", "tiscali.it"), ("S.r.l.", "S.p.A.")),
}

# (city, country, postcode pattern, landline prefix, random landline digits, area-code length).
# Pattern slots: "#" digit, "%" digit 1-9, "@" letter, "&" Eircode character.
CITIES: tuple[tuple[str, str, str, str, int, int], ...] = (
    ("London", "GB", "SW% %@@", "207", 7, 2), ("London", "GB", "E% %@@", "203", 7, 2),
    ("Manchester", "GB", "M%# %@@", "1614", 6, 3), ("Birmingham", "GB", "B%# %@@", "1214", 6, 3),
    ("Leeds", "GB", "LS% %@@", "1134", 6, 3), ("Glasgow", "GB", "G%# %@@", "1414", 6, 3),
    ("Edinburgh", "GB", "EH% %@@", "1314", 6, 3), ("Bristol", "GB", "BS% %@@", "1179", 6, 3),
    ("Liverpool", "GB", "L%# %@@", "1514", 6, 3), ("Cardiff", "GB", "CF%# %@@", "2920", 6, 2),
    ("Belfast", "GB", "BT% %@@", "2890", 6, 2), ("Sheffield", "GB", "S%# %@@", "1142", 6, 3),
    ("New York", "US", "100##", "212", 7, 3), ("New York", "US", "101##", "646", 7, 3),
    ("San Francisco", "US", "941##", "415", 7, 3), ("Los Angeles", "US", "900##", "213", 7, 3),
    ("Chicago", "US", "606##", "312", 7, 3), ("Boston", "US", "021##", "617", 7, 3),
    ("Seattle", "US", "981##", "206", 7, 3), ("Austin", "US", "787##", "512", 7, 3),
    ("Miami", "US", "331##", "305", 7, 3), ("Denver", "US", "802##", "303", 7, 3),
    ("Atlanta", "US", "303##", "404", 7, 3), ("Berlin", "DE", "10###", "30", 8, 2),
    ("Hamburg", "DE", "20###", "40", 8, 2), ("München", "DE", "80###", "89", 8, 2),
    ("Köln", "DE", "50###", "221", 7, 3), ("Frankfurt am Main", "DE", "60###", "69", 8, 2),
    ("Stuttgart", "DE", "70###", "711", 7, 3), ("Düsseldorf", "DE", "40###", "211", 7, 3),
    ("Leipzig", "DE", "04###", "341", 7, 3), ("Paris", "FR", "750%#", "14", 7, 1),
    ("Lyon", "FR", "6900%", "47", 7, 1), ("Marseille", "FR", "130%#", "49", 7, 1),
    ("Toulouse", "FR", "310%#", "56", 7, 1), ("Nice", "FR", "060%#", "49", 7, 1),
    ("Nantes", "FR", "440%#", "24", 7, 1), ("Bordeaux", "FR", "330%#", "55", 7, 1),
    ("Lille", "FR", "590%#", "32", 7, 1), ("Madrid", "ES", "280##", "91", 7, 2),
    ("Barcelona", "ES", "080##", "93", 7, 2), ("Valencia", "ES", "460##", "96", 7, 2),
    ("Sevilla", "ES", "410##", "95", 7, 2), ("Bilbao", "ES", "480##", "944", 6, 2),
    ("Málaga", "ES", "290##", "952", 6, 3), ("Zaragoza", "ES", "500##", "976", 6, 3),
    ("Amsterdam", "NL", "10%# @@", "20", 7, 2), ("Rotterdam", "NL", "30%# @@", "10", 7, 2),
    ("Den Haag", "NL", "25%# @@", "70", 7, 2), ("Utrecht", "NL", "35%# @@", "30", 7, 2),
    ("Eindhoven", "NL", "56%# @@", "40", 7, 2), ("Groningen", "NL", "97%# @@", "50", 7, 2),
    ("Haarlem", "NL", "20%# @@", "23", 7, 2), ("Dublin", "IE", "D0% &&&&", "1", 7, 1),
    ("Cork", "IE", "T12 &&&&", "21", 7, 2), ("Galway", "IE", "H91 &&&&", "91", 6, 2),
    ("Limerick", "IE", "V94 &&&&", "61", 6, 2), ("Waterford", "IE", "X91 &&&&", "51", 6, 2),
    ("Kilkenny", "IE", "R95 &&&&", "56", 7, 2), ("Roma", "IT", "001%#", "064", 7, 2),
    ("Milano", "IT", "201%#", "02", 8, 2), ("Napoli", "IT", "801%#", "081", 7, 3),
    ("Torino", "IT", "101%#", "011", 7, 3), ("Firenze", "IT", "501%#", "055", 7, 3),
    ("Bologna", "IT", "401%#", "051", 7, 3), ("Venezia", "IT", "301%#", "041", 7, 3),
)
_SLOTS = {"#": "0123456789", "%": "123456789", "@": "ABDEFGHJLNPQRSTUWXYZ",
          "&": "ACDEFHKNPRTVWXY0123456789"}




FIRST_NAMES: tuple[str, ...] = _words("""
James John Robert Michael William David Richard Thomas Charles Daniel Matthew Andrew Joseph
Christopher Benjamin Samuel Oliver Harry George Jack Alexander Nicholas Jonathan Edward Anthony
Emily Olivia Sophie Charlotte Jessica Elizabeth Katherine Sarah Emma Hannah Grace Lucy Amelia
Margaret Rebecca Victoria Jennifer Patricia Susan Abigail Lukas Jonas Felix Maximilian Jürgen
Stefan Wolfgang Klaus Günther Anna Lena Leonie Katrin Sabine Ursula Louis Hugo Théo Antoine
Étienne François Céline Chloé Camille Manon Élodie Anaïs Léa Inès Amélie José Javier Alejandro
Sergio Pablo Álvaro Raúl Andrés Lucía María Carmen Sofía Marta Paula Begoña Giuseppe Marco Luca
Alessandro Matteo Francesco Niccolò Giulia Chiara Francesca Alessia Martina Daan Bram Thijs
Pieter Joris Sanne Femke Lotte Anouk Fleur Seán Ciarán Eoin Cillian Pádraig Niamh Siobhán Aoife
Orla Róisín Björn Søren Lars Ingrid Astrid Åsa Zoë Mohammed Ahmed Omar Fatima Aisha Priya Rahul
Arjun Ananya Wei Mei Hiroshi Yuki Kwame Amara Chinedu Zainab Oleksandr Katarzyna Piotr
Agnieszka Dmitri Natalia Nikola Ivana Mehmet Elif Ayşe João Beatriz Rafael Isabel Leonardo
""")
LAST_NAMES: tuple[str, ...] = _words("""
Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson
Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner
Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen Scott Phillips Watson
Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins
Bell Shaw Miller Cox Khan Marshall Anderson Simpson Ellis Adams Singh Begum Foster Chapman Powell
Webb Rogers Gray Mason Ali Hunt Hussain Campbell Owen Palmer Holmes Barnes Knight Lloyd Butler
Russell Fisher Stevens Jenkins Fletcher Garcia Rodriguez Hernandez Nguyen Kim Washington Müller
Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter
Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hartmann Lange Weiß Bernard Dubois
Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel Bertrand Roux Fournier Girard Bonnet
Dupont Lambert Fontaine Rousseau Chevalier García Fernández González Rodríguez López Martínez
Sánchez Pérez Gómez Martín Jiménez Ruiz Díaz Moreno Muñoz Álvarez Romero Rossi Russo Ferrari
Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De_Luca Mancini Costa
Giordano Rizzo Lombardi Moretti de_Jong Jansen de_Vries van_den_Berg van_Dijk Bakker Visser Smit
Meijer de_Boer Mulder de_Groot Bos Vos Dekker Murphy O'Brien O'Sullivan Walsh O'Connor McCarthy
Byrne Ryan O'Neill Doyle Gallagher Kennedy Lynch Quinn Nowak Kowalski Wiśniewska Novák Horvat
Demir Kaya Wang Zhang Chen Liu Tanaka Suzuki Okafor Mensah Kumar Sharma Gupta Haddad Andersson
Johansson Nielsen Hansen Larsen Kovács
""")
STREETS: dict[str, tuple[str, ...]] = {
    "GB": ("High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane",
           "Manor Road", "Park Avenue", "Queen Street", "King's Road", "Mill Lane", "The Crescent"),
    "US": ("Main Street", "Oak Avenue", "Maple Drive", "Market Street", "Broadway", "Elm Street",
           "Washington Avenue", "Sunset Boulevard", "Pine Street", "Cedar Lane", "5th Avenue"),
    "DE": ("Hauptstraße", "Bahnhofstraße", "Gartenstraße", "Schulstraße", "Lindenallee",
           "Goethestraße", "Schillerstraße", "Bergstraße", "Kirchweg", "Am Markt"),
    "FR": ("rue de la Paix", "rue Victor Hugo", "avenue des Champs-Élysées", "rue de Rivoli",
           "boulevard Saint-Michel", "place de la République", "avenue Jean Jaurès",
           "rue Pasteur", "chemin des Vignes", "rue du Faubourg Saint-Honoré"),
    "ES": ("Calle Mayor", "Gran Vía", "Calle de Alcalá", "Paseo de la Castellana", "Calle Real",
           "Avenida de la Constitución", "Plaza de España", "Calle del Sol", "Rambla de Catalunya"),
    "NL": ("Kerkstraat", "Dorpsstraat", "Stationsweg", "Molenweg", "Prinsengracht",
           "Keizersgracht", "Schoolstraat", "Julianalaan", "Wilhelminastraat", "Brink"),
    "IE": ("Main Street", "O'Connell Street", "Grafton Street", "Church Road", "Strand Road",
           "Patrick Street", "Shop Street", "Bridge Street", "Castle Street"),
    "IT": ("Via Roma", "Via Garibaldi", "Corso Vittorio Emanuele II", "Via Dante", "Via Mazzini",
           "Piazza del Duomo", "Via Verdi", "Viale Europa", "Via Cavour", "Via della Repubblica"),
}
COMPANY_STEMS: tuple[str, ...] = _words("""
Northwind Bluewave Brightpath Crestline Evergreen Ironbridge Silverline Redstone Greenfield
Harbourview Summit Pinnacle Quantum Nimbus Vertex Atlas Orion Meridian Horizon Lighthouse
Keystone Fairway Oakridge Riverbend Stonegate Westbrook Highland Cobalt Amber Falcon Kestrel
Heron Lynx Polaris Zenith Apex Nova Beacon Cascade Copperleaf Driftwood Foxglove Granite Juniper
Lantern Alpenblick Rhein_Logistik Sonnenhof Azur_Conseil Soleil_Conseil Iberia_Digital
Costa_Verde Tulip_Tech Delta_Werken Celtic_Software Shamrock_Foods Bella_Vista Dolomiti Sierra
Nordlicht Müller_&_Söhne
""")
JOB_TITLES: tuple[str, ...] = (
    "Account Manager", "Accountant", "Business Analyst", "CEO", "CFO", "CTO", "COO",
    "Customer Success Manager", "Data Analyst", "Data Engineer", "Designer", "Director of Sales",
    "Engineering Manager", "Finance Director", "Founder", "HR Manager", "IT Manager",
    "Marketing Manager", "Office Manager", "Operations Manager", "Product Manager",
    "Project Manager", "Procurement Lead", "Recruiter", "Sales Executive", "Sales Manager",
    "Software Engineer", "Senior Software Engineer", "Solutions Architect", "Support Engineer",
    "Head of Marketing", "Head of People", "Legal Counsel", "Consultant", "Managing Director",
    "Team Lead", "Buyer", "Logistics Coordinator", "Research Scientist", "Executive Assistant",
)
FREE_MAIL: tuple[str, ...] = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com")
NICKNAMES: dict[str, tuple[str, ...]] = {
    "John": ("Jon", "Johnny", "Jack"), "William": ("Will", "Bill"), "Robert": ("Rob", "Bob"),
    "Michael": ("Mike", "Mick"), "James": ("Jim", "Jamie"), "Richard": ("Rich", "Rick"),
    "Thomas": ("Tom", "Tommy"), "Christopher": ("Chris",), "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",), "Andrew": ("Andy", "Drew"), "Joseph": ("Joe",), "Benjamin": ("Ben",),
    "Samuel": ("Sam",), "Alexander": ("Alex", "Sasha"), "Nicholas": ("Nick",), "Jonathan": ("Jon",),
    "Edward": ("Ed", "Ted"), "Anthony": ("Tony",), "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Katherine": ("Kate", "Katie", "Kathy"), "Margaret": ("Maggie", "Peggy"), "Jennifer": ("Jen",),
    "Patricia": ("Pat", "Trish"), "Susan": ("Sue",), "Rebecca": ("Becky",), "Victoria": ("Vicky",),
    "Abigail": ("Abby",), "Jessica": ("Jess",), "Charlotte": ("Charlie",), "José": ("Pepe",),
    "Giuseppe": ("Beppe",), "Maximilian": ("Max",), "Alessandro": ("Sandro",), "Dmitri": ("Dima",),
    "Oleksandr": ("Sasha",), "Pádraig": ("Paddy",), "Francesco": ("Franco",),
    "Alejandro": ("Álex",),
}


# fmt: on

# Vectorised lookup tables: object arrays, so fancy indexing yields Python strs directly.
_CC = tuple(COUNTRIES)
_US = _CC.index("US")


def _objects(values: Iterable[str]) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _ragged(rows: Iterable[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """A padded 2-D object array plus the true length of each row, for :func:`_pick`."""
    padded = [tuple(row) or ("",) for row in rows]
    width = max(len(row) for row in padded)
    table = np.array([row + ("",) * (width - len(row)) for row in padded], dtype=object)
    return table, np.array([len(row) for row in padded])


def _pick(table: tuple[np.ndarray, np.ndarray], row: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Per element, entry ``draw % len`` of table row ``row`` (uniform within the row)."""
    values, lengths = table
    return values[row, draw % lengths[row]]


_FIRST, _LAST = _objects(FIRST_NAMES), _objects(LAST_NAMES)
_FIRST_ASCII = _objects(_fold(s) for s in FIRST_NAMES)
_LAST_ASCII = _objects(_fold(s) for s in LAST_NAMES)
_INITIAL = _objects(s[0] for s in _FIRST_ASCII)
_STEM, _STEM_ASCII = _objects(COMPANY_STEMS), _objects(_fold(s) for s in COMPANY_STEMS)
_JOBS, _FREE = _objects(JOB_TITLES), _objects(FREE_MAIL)
_CODES, _ALPHA3 = _objects(_CC), _objects(c.alpha3 for c in COUNTRIES.values())
_TLD = _objects(c.tld for c in COUNTRIES.values())
_NAMES = _ragged(c.names for c in COUNTRIES.values())
_MOBILE = _ragged(c.mobile for c in COUNTRIES.values())
_MOBILE_DIGITS = np.array([c.mobile_digits for c in COUNTRIES.values()])
_MOBILE_AREA = np.array([c.mobile_area for c in COUNTRIES.values()])
_MAIL = _ragged(c.mail for c in COUNTRIES.values())
_SUFFIXES = _ragged(c.suffixes for c in COUNTRIES.values())
_STREETS = _ragged(STREETS[cc] for cc in _CC)
_NUMBER_LAST = np.isin(_CODES, ["DE", "NL", "ES", "IT"])  # "Hauptstraße 12", not "12 High St"
_STREET_SEP = _objects(", " if cc in ("ES", "IT") else " " for cc in _CC)
_CITY_CC = np.array([_CC.index(c[1]) for c in CITIES])
_CITY = _objects(c[0] for c in CITIES)
_LAND = _objects(c[3] for c in CITIES)
_LAND_DIGITS = np.array([c[4] for c in CITIES])
_LAND_AREA = np.array([c[5] for c in CITIES])
_NEWSLETTER = _objects(("yes", "no", ""))
# Email local part = A + separator + B + row number: "john.smith17", "jsmith17", "john17", ...
# Names hold no digits, so the trailing row number alone keeps distinct people apart.
_MAIL_A = np.array([0, 1, 0, 0, 2, 1, 0])  # 0 first name, 1 initial, 2 last name
_MAIL_SEP = _objects((".", "", "", "_", ".", ".", ""))
_MAIL_B = np.array([2, 2, 2, 2, 0, 2, 3])  # 3 nothing


def _group(digits: str) -> str:
    """Split a subscriber number into readable groups (3-3, 3-4 or 4-4)."""
    cut = 4 if len(digits) >= 8 else 3
    return f"{digits[:cut]} {digits[cut:]}" if len(digits) > 5 else digits


def _format_phone(cc: str, nsn: str, area: int, style: int) -> str:
    """Render a national significant number in one of four human styles for its country."""
    info = COUNTRIES[cc]
    if cc == "US":
        a, b, c = nsn[:3], nsn[3:6], nsn[6:]
        styles = (f"({a}) {b}-{c}", f"+1 {a}-{b}-{c}", f"+1{nsn}", f"{a}.{b}.{c}")
        return styles[style]
    if style == 2:
        return f"+{info.calling_code}{nsn}"
    if style == 3:
        return f"{info.trunk}{nsn}"
    if cc == "FR":
        rest = f"{nsn[0]} {nsn[1:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
    else:
        rest = f"{nsn[:area]} {_group(nsn[area:])}"
    return f"{info.trunk}{rest}" if style == 0 else f"+{info.calling_code} {rest}"


def _fill_pattern(rng: np.random.Generator, pattern: str, k: int) -> list[str]:
    """Fill ``k`` copies of a postcode pattern with random slot characters, vectorised."""
    codes = np.tile(np.frombuffer(pattern.encode(), dtype=np.uint8), (k, 1))
    for j, ch in enumerate(pattern):
        if ch in _SLOTS:
            alphabet = np.frombuffer(_SLOTS[ch].encode(), dtype=np.uint8)
            codes[:, j] = alphabet[rng.integers(0, len(alphabet), k)]
    return codes.view(f"S{len(pattern)}").ravel().astype(f"U{len(pattern)}").tolist()


def _timestamps(rng: np.random.Generator, start: datetime, k: int) -> list[str]:
    """``k`` ISO-8601 UTC instants spread over the year after ``start``."""
    if start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)
    base = np.datetime64(start.replace(microsecond=0), "s")
    offsets = rng.integers(0, 365 * 86_400, k).astype("timedelta64[s]")
    return [s + "Z" for s in np.datetime_as_string(base + offsets, unit="s").tolist()]


def _birth_dates(rng: np.random.Generator, start: datetime, k: int) -> list[str]:
    """``k`` YYYY-MM-DD dates of people aged 18 to 85 at ``start``."""
    base = np.datetime64(start.date(), "D")
    ages = rng.integers(18 * 365, 85 * 365, k).astype("timedelta64[D]")
    return np.datetime_as_string(base - ages, unit="D").tolist()


class _Person(NamedTuple):
    """An original row plus what is needed to derive realistic duplicates from it."""

    record: dict[str, str]
    cc: str
    nsn: str  # national significant number of the phone, "" if none
    area: int


def _originals(rng: np.random.Generator, rownums: np.ndarray, opts: SampleOptions) -> list[_Person]:
    """Generate fresh people for the given 1-based row numbers, column by column."""
    k = len(rownums)
    city = rng.integers(0, len(CITIES), k)
    cc = _CITY_CC[city]
    first = rng.integers(0, len(FIRST_NAMES), k)
    last = rng.integers(0, len(LAST_NAMES), k)
    p_comp, p_suf, p_job, p_pat, p_dom, p_mob, p_st, p_cty = rng.integers(0, 1 << 30, (8, k))
    u_comp, u_job, u_mail, u_dom, u_tel, u_mob, u_birth, u_cty = rng.random((8, k))
    digits = rng.integers(0, 10**8, k)
    styles = rng.choice(4, k, p=[0.4, 0.35, 0.15, 0.1]).tolist()
    news = _NEWSLETTER[rng.choice(3, k, p=[0.35, 0.4, 0.25])]
    postcodes = np.empty(k, dtype=object)
    for c in np.unique(city).tolist():
        sel = np.flatnonzero(city == c)
        postcodes[sel] = _fill_pattern(rng, CITIES[c][2], len(sel))
    births = np.where(u_birth < 0.6, _birth_dates(rng, opts.start, k), "")
    stamps = _timestamps(rng, opts.start, k)

    stem = p_comp % len(COMPANY_STEMS)
    has_company = u_comp < 0.75
    company = np.where(u_comp < 0.08, _STEM[stem], _STEM[stem] + " " + _pick(_SUFFIXES, cc, p_suf))
    company = np.where(has_company, company, "")
    job = np.where(u_job < np.where(has_company, 0.9, 0.15), _JOBS[p_job % len(JOB_TITLES)], "")

    parts = np.stack([_FIRST_ASCII[first], _INITIAL[first], _LAST_ASCII[last], np.full(k, "")])
    pattern, cols = p_pat % len(_MAIL_SEP), np.arange(k)
    local = parts[_MAIL_A[pattern], cols] + _MAIL_SEP[pattern] + parts[_MAIL_B[pattern], cols]
    domain = np.where(
        has_company & (u_dom < 0.35),
        _STEM_ASCII[stem] + "." + _TLD[cc],
        np.where(u_dom < 0.75, _FREE[p_dom % len(FREE_MAIL)], _pick(_MAIL, cc, p_dom)),
    )
    email = np.where(u_mail < 0.93, local + rownums.astype(str).astype(object) + "@" + domain, "")

    # Phones: a national significant number (NSN) from a range that validates, then a style.
    is_us, mobile = cc == _US, (u_mob < 0.6) & (cc != _US)
    exchange = 200 + digits % 800  # US: one plan for all lines; skip N11 and 555 exchanges
    exchange += (exchange == 555) | (exchange % 100 == 11)
    us_prefix = _LAND[city] + exchange.astype(str).astype(object)
    prefix = np.where(is_us, us_prefix, np.where(mobile, _pick(_MOBILE, cc, p_mob), _LAND[city]))
    size = np.where(is_us, 4, np.where(mobile, _MOBILE_DIGITS[cc], _LAND_DIGITS[city]))
    tail = np.where(is_us, digits // 800, digits) % 10**size
    area = np.where(mobile, _MOBILE_AREA[cc], _LAND_AREA[city]).tolist()
    has_phone = (u_tel < 0.7).tolist()
    nsn = [
        f"{p}{t:0{s}d}" if h else ""
        for p, t, s, h in zip(prefix.tolist(), tail.tolist(), size.tolist(), has_phone, strict=True)
    ]
    codes = _CODES[cc].tolist()
    phone = [
        _format_phone(c, n, a, s) if n else ""
        for c, n, a, s in zip(codes, nsn, area, styles, strict=True)
    ]

    name = _pick(_STREETS, cc, p_st)
    number = (1 + p_st // 16 % np.where(is_us, 9999, 180)).astype(str).astype(object)
    street = np.where(_NUMBER_LAST[cc], name + _STREET_SEP[cc] + number, number + " " + name)
    country = np.where(
        u_cty < 0.94, _CODES[cc], np.where(u_cty < 0.97, _pick(_NAMES, cc, p_cty), _ALPHA3[cc])
    )
    ids = [f"{opts.id_prefix}{n:07d}" for n in rownums.tolist()]
    columns = (
        ids, _FIRST[first], _LAST[last], email, phone, company, job, street, _CITY[city],
        postcodes, country, births, news, stamps, ids,
    )  # fmt: skip
    values = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns]
    return [
        _Person(dict(zip(FIELDS, row, strict=True)), c, n, a)
        for row, c, n, a in zip(zip(*values, strict=True), codes, nsn, area, strict=True)
    ]


def _typo(word: str, prng: random.Random) -> str:
    """Swap two adjacent letters (or drop one of a doubled pair, or double a short name's end)."""
    if len(word) < 4:
        return word + word[-1]
    i = prng.randrange(1, len(word) - 1)
    if word[i] == word[i + 1]:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _strip_accents(text: str) -> str:
    """Drop diacritics but keep case: "José" -> "Jose"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _vary(src: _Person, pid: str, stamp: str, prng: random.Random) -> dict[str, str]:
    """A later, messier record of the same real person as ``src``."""
    rec = dict(src.record, id=pid, updated_at=stamp)
    first, roll = rec["first_name"], prng.random()
    if roll < 0.25 and first in NICKNAMES:
        rec["first_name"] = prng.choice(NICKNAMES[first])
    elif roll < 0.4:
        rec["first_name"] = _typo(first, prng)
    elif roll < 0.5:
        rec["first_name"] = _strip_accents(first).upper()
    roll = prng.random()
    if roll < 0.1:
        rec["last_name"] = rec["last_name"].upper()
    elif roll < 0.15:
        rec["last_name"] = _typo(rec["last_name"], prng)
    email, roll = rec["email"], prng.random()
    if email and roll < 0.3:
        local, domain = email.split("@")
        rec["email"] = prng.choice((email.upper(), email.title(), f"{local.capitalize()}@{domain}"))
    elif roll < 0.45:
        rec["email"] = ""
    roll = prng.random()
    if src.nsn and roll < 0.35:
        rec["phone"] = _format_phone(src.cc, src.nsn, src.area, prng.randrange(4))
    elif roll < 0.5:
        rec["phone"] = ""
    for field in ("company", "job_title", "street", "postcode", "birth_date", "newsletter"):
        if prng.random() < 0.15:
            rec[field] = ""
    if prng.random() < 0.3:
        info = COUNTRIES[src.cc]
        rec["country"] = prng.choice((src.cc, src.cc.lower(), info.names[0], info.alpha3))
    return rec


def _break(rec: dict[str, str], kind: int) -> dict[str, str]:
    """Break a copy of ``rec`` in exactly one way, without marking it."""
    rec = dict(rec)
    if kind == 0:
        fallback = f"{_fold(rec['first_name'])}.{_fold(rec['last_name'])}gmail.com"
        rec["email"] = rec["email"].replace("@", "") or fallback
    elif kind == 1:
        rec["phone"] = "12"
    elif kind == 2:
        rec["id"] = ""
    elif kind == 3:
        rec["country"] = "Atlantis"
    else:
        rec["birth_date"] = "31/02/1990"
    return rec


def _iter_chunks(n: int, opts: SampleOptions) -> Iterator[list[dict[str, str]]]:
    """Yield the ``n`` rows in lists of at most ``_CHUNK``; duplicates reach two chunks back."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(opts.seed)
    keep = opts.duplicate_rate > 0  # then hand out copies: callers may mutate what they get
    previous: list[_Person] = []
    for lo in range(0, n, _CHUNK):
        m = min(_CHUNK, n - lo)
        dup = rng.random(m) < opts.duplicate_rate
        dup[0] &= lo > 0  # the very first row has nobody earlier to copy
        people = _originals(rng, np.flatnonzero(~dup) + lo + 1, opts)
        if not keep:
            rows = [person.record for person in people]
        else:
            stamps = _timestamps(rng, opts.start, m)
            prng = random.Random(int(rng.integers(0, 2**63)))
            fresh, rows = iter(people), []
            current: list[_Person] = []
            for i, is_dup in enumerate(dup.tolist()):
                if is_dup:
                    j = prng.randrange(len(previous) + len(current))
                    src = previous[j] if j < len(previous) else current[j - len(previous)]
                    rows.append(_vary(src, f"{opts.id_prefix}{lo + i + 1:07d}", stamps[i], prng))
                else:
                    current.append(next(fresh))
                    rows.append(dict(current[-1].record))
            previous = current
        if opts.invalid_rate > 0:
            broken = np.flatnonzero(rng.random(m) < opts.invalid_rate).tolist()
            for i, kind in zip(broken, rng.integers(0, 5, len(broken)).tolist(), strict=True):
                rows[i] = _break(rows[i], kind)
        yield rows


def iter_people(n: int, options: SampleOptions = DEFAULT_OPTIONS) -> Iterator[dict[str, Any]]:
    """Yield n raw person records (flat dicts of str values, as a CSV/JSON source would give).

    Args:
        n: Number of rows to yield, duplicates and invalid rows included.
        options: Seed, duplicate and invalid rates, id prefix and time window.

    Yields:
        One dict per row with the keys in :data:`FIELDS`, all values ``str``.

    Raises:
        ValueError: If ``n`` is negative.
    """
    for chunk in _iter_chunks(n, options):
        yield from chunk


def _jsonl(rows: list[dict[str, str]]) -> bytes:
    """JSON Lines for ``rows``: one orjson call per chunk is ~3x faster than one per row."""
    body = orjson.dumps(rows)[1:-1].replace(b"},{", b"}\n{") + b"\n"
    if body.count(b"\n") == len(rows):  # JSON escapes newlines in strings; no value held "},{"
        return body
    return b"".join([orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows])


def write_jsonl(path: Path, n: int, options: SampleOptions = DEFAULT_OPTIONS) -> int:
    """Stream ``n`` people to ``path`` as JSON Lines (UTF-8, one object per line).

    Args:
        path: File to create or overwrite.
        n: Number of rows.
        options: Generator options, as for :func:`iter_people`.

    Returns:
        The number of rows written.
    """
    written = 0
    with Path(path).open("wb") as fh:
        for chunk in _iter_chunks(n, options):
            fh.write(_jsonl(chunk))
            written += len(chunk)
    return written


def write_csv(path: Path, n: int, options: SampleOptions = DEFAULT_OPTIONS) -> int:
    """Stream ``n`` people to ``path`` as UTF-8 CSV with a header row of :data:`FIELDS`.

    Args:
        path: File to create or overwrite.
        n: Number of rows.
        options: Generator options, as for :func:`iter_people`.

    Returns:
        The number of rows written (header excluded).
    """
    written = 0
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        row_values = operator.itemgetter(*FIELDS)  # DictWriter re-checks keys on every row
        for chunk in _iter_chunks(n, options):
            writer.writerows(map(row_values, chunk))
            written += len(chunk)
    return written
