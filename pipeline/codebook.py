"""Official ONISR codebook of the BAAC annual road-accident open data.

Pure data: a transcription of the ONISR document "Description des bases de
données annuelles des accidents corporels de la circulation routière, années de
2005 à 2024" (21 October 2025) for the four tables (caracteristiques, lieux,
vehicules, usagers), with an English translation of every description and label.

Transcription conventions:

* French labels are copied from the document as printed, including its typos
  ("par le coté", "Voie Communales", "autre", the unclosed parenthesis of
  ``manv`` 24) and its typographic apostrophes and dashes.
* Where the document groups codes under a sub-heading and the label alone is
  ambiguous (``manv`` 11-18, ``locp`` 1-4, ``actp`` 1-2), the sub-heading is
  prefixed: "Changeant de file – A gauche".
* ``catv`` codes printed 00..99 are stored as ints (0, 1, ..., 99).
* ``actp`` letter codes are mapped to ints, see ``ACTP_LETTERS``.
* ``place`` is only given as a picture in the document; its labels describe the
  picture (car seen from above, driver on the left).
* Codes found in the real 2020/2021 files but absent from the document are added
  separately (``UNDOCUMENTED_MISSING``, ``UNDOCUMENTED_CODES``) so the transcribed
  lists stay exactly the document's.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from types import MappingProxyType
from typing import Final

CODEBOOK_VERSION: Final[str] = "ONISR, Description des bases de données annuelles 2005-2024, 21 octobre 2025"

# The four tables, their columns in the order of the real 2020/2021 CSV headers, and the kind of
# each column: "key" (int64 id), "vid" (vehicle id with thousands separators), "code" (small
# nullable int), "int" (nullable int), "float" (decimal comma), "pr" (int or "(1)" for unknown),
# "str" (free text). The codebook also lists ``id_usager`` for usagers, but it only appears in the
# files from 2022 on. ``ingest`` reads with it, ``schemas`` validates with it.
# fmt: off
SCHEMA: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "caracteristiques": MappingProxyType({
            "Num_Acc": "key", "jour": "int", "mois": "int", "an": "int", "hrmn": "str", "lum": "code",
            "dep": "str", "com": "str", "agg": "code", "int": "code", "atm": "code", "col": "code",
            "adr": "str", "lat": "float", "long": "float",
        }),
        "lieux": MappingProxyType({
            "Num_Acc": "key", "catr": "code", "voie": "str", "v1": "code", "v2": "str", "circ": "code",
            "nbv": "int", "vosp": "code", "prof": "code", "pr": "pr", "pr1": "pr", "plan": "code",
            "lartpc": "float", "larrout": "float", "surf": "code", "infra": "code", "situ": "code", "vma": "int",
        }),
        "vehicules": MappingProxyType({
            "Num_Acc": "key", "id_vehicule": "vid", "num_veh": "str", "senc": "code", "catv": "code",
            "obs": "code", "obsm": "code", "choc": "code", "manv": "code", "motor": "code", "occutc": "int",
        }),
        "usagers": MappingProxyType({
            "Num_Acc": "key", "id_vehicule": "vid", "num_veh": "str", "place": "code", "catu": "code",
            "grav": "code", "sexe": "code", "an_nais": "int", "trajet": "code", "secu1": "code",
            "secu2": "code", "secu3": "code", "locp": "code", "actp": "code", "etatp": "code",
        }),
    }
)
# fmt: on
TABLES: Final[tuple[str, ...]] = tuple(SCHEMA)

# Cells, once stripped, that mean "unknown" in a raw table or a flat record file.
MISSING_TOKENS: Final[tuple[str, ...]] = ("", "N/A", "NA", "n/a", "nan", "None")

# The codebook writes two actp codes as letters; they are stored as these ints
# (10 and 11 are not used by any numeric actp code).
ACTP_LETTERS: Final[Mapping[str, int]] = MappingProxyType({"A": 10, "B": 11})

NOT_RECORDED: Final[tuple[str, str]] = ("Non renseigné", "Not recorded")

# Official-data anomaly: the real 2020/2021 files write -1 ("Non renseigné") in
# these columns although their codebook lists do not include -1. It is added to
# their codes as (-1, NOT_RECORDED). Counts: lum 5 (2020), int 1 (2020), catv 5
# (2020) + 4 (2021), place 17 (2021), grav 60 (2021), sexe 3062 (2021; users who
# fled, added from 2021 on).
UNDOCUMENTED_MISSING: Final[frozenset[str]] = frozenset(
    {
        "caracteristiques.lum",
        "caracteristiques.int",
        "vehicules.catv",
        "usagers.place",
        "usagers.grav",
        "usagers.sexe",
    }
)

# Official-data anomaly: codes present in the real 2020/2021 files but absent
# from the codebook, with no documented meaning. actp 7 (11 rows in 2020, 10 in
# 2021) and actp 8 (8 rows in 2020, 19 in 2021).
UNDOCUMENTED_CODES: Final[Mapping[str, Mapping[int, tuple[str, str]]]] = MappingProxyType(
    {
        "usagers.actp": MappingProxyType(
            {
                7: ("Code non documenté (7)", "Undocumented code (7)"),
                8: ("Code non documenté (8)", "Undocumented code (8)"),
            }
        ),
    }
)


@dataclass(frozen=True)
class Column:
    """One column of a BAAC table with its codebook description and codes."""

    name: str
    table: str
    fr: str
    en: str
    codes: Mapping[int, tuple[str, str]] = field(hash=False)

    @property
    def key(self) -> str:
        """Qualified name ``table.column``."""
        return f"{self.table}.{self.name}"


_Codes = dict[int, tuple[str, str]]

_NR: Final[tuple[str, str]] = NOT_RECORDED

# ---------------------------------------------------------------------------
# Code lists, transcribed from the codebook.
# ---------------------------------------------------------------------------

_LUM: _Codes = {
    1: ("Plein jour", "Full daylight"),
    2: ("Crépuscule ou aube", "Dusk or dawn"),
    3: ("Nuit sans éclairage public", "Night without street lighting"),
    4: ("Nuit avec éclairage public non allumé", "Night, street lighting not lit"),
    5: ("Nuit avec éclairage public allumé", "Night, street lighting lit"),
}

_AGG: _Codes = {
    1: ("Hors agglomération", "Outside built-up area"),
    2: ("En agglomération", "Inside built-up area"),
}

_INT: _Codes = {
    1: ("Hors intersection", "Not at an intersection"),
    2: ("Intersection en X", "X-junction (crossroads)"),
    3: ("Intersection en T", "T-junction"),
    4: ("Intersection en Y", "Y-junction"),
    5: ("Intersection à plus de 4 branches", "Junction with more than 4 arms"),
    6: ("Giratoire", "Roundabout"),
    7: ("Place", "Square"),
    8: ("Passage à niveau", "Level crossing"),
    9: ("Autre intersection", "Other junction"),
}

_ATM: _Codes = {
    -1: _NR,
    1: ("Normale", "Normal"),
    2: ("Pluie légère", "Light rain"),
    3: ("Pluie forte", "Heavy rain"),
    4: ("Neige - grêle", "Snow - hail"),
    5: ("Brouillard - fumée", "Fog - smoke"),
    6: ("Vent fort - tempête", "Strong wind - storm"),
    7: ("Temps éblouissant", "Dazzling glare"),
    8: ("Temps couvert", "Overcast"),
    9: ("Autre", "Other"),
}

_COL: _Codes = {
    -1: _NR,
    1: ("Deux véhicules - frontale", "Two vehicles - head-on"),
    2: ("Deux véhicules – par l’arrière", "Two vehicles - rear-end"),
    3: ("Deux véhicules – par le coté", "Two vehicles - side impact"),
    4: ("Trois véhicules et plus – en chaîne", "Three or more vehicles - pile-up"),
    5: (
        "Trois véhicules et plus - collisions multiples",
        "Three or more vehicles - multiple collisions",
    ),
    6: ("Autre collision", "Other collision"),
    7: ("Sans collision", "No collision"),
}

_CATR: _Codes = {
    1: ("Autoroute", "Motorway"),
    2: ("Route nationale", "National road"),
    3: ("Route Départementale", "Departmental road"),
    4: ("Voie Communales", "Municipal road"),
    5: ("Hors réseau public", "Off the public road network"),
    6: (
        "Parc de stationnement ouvert à la circulation publique",
        "Car park open to public traffic",
    ),
    7: ("Routes de métropole urbaine", "Metropolitan urban roads"),
    9: ("autre", "Other"),
}

_CIRC: _Codes = {
    -1: _NR,
    1: ("A sens unique", "One-way"),
    2: ("Bidirectionnelle", "Two-way"),
    3: ("A chaussées séparées", "Dual carriageway"),
    4: ("Avec voies d’affectation variable", "With reversible lanes"),
}

_VOSP: _Codes = {
    -1: _NR,
    0: ("Sans objet", "Not applicable"),
    1: ("Piste cyclable", "Cycle track"),
    2: ("Bande cyclable", "Cycle lane"),
    3: ("Voie réservée", "Reserved lane"),
}

_PROF: _Codes = {
    -1: _NR,
    1: ("Plat", "Flat"),
    2: ("Pente", "Slope"),
    3: ("Sommet de côte", "Hilltop"),
    4: ("Bas de côte", "Bottom of a hill"),
}

_PLAN: _Codes = {
    -1: _NR,
    1: ("Partie rectiligne", "Straight section"),
    2: ("En courbe à gauche", "Left-hand bend"),
    3: ("En courbe à droite", "Right-hand bend"),
    4: ("En « S »", "S-bend"),
}

_SURF: _Codes = {
    -1: _NR,
    1: ("Normale", "Normal"),
    2: ("Mouillée", "Wet"),
    3: ("Flaques", "Puddles"),
    4: ("Inondée", "Flooded"),
    5: ("Enneigée", "Snow-covered"),
    6: ("Boue", "Mud"),
    7: ("Verglacée", "Icy"),
    8: ("Corps gras – huile", "Grease - oil"),
    9: ("Autre", "Other"),
}

_INFRA: _Codes = {
    -1: _NR,
    0: ("Aucun", "None"),
    1: ("Souterrain - tunnel", "Underground - tunnel"),
    2: ("Pont - autopont", "Bridge - flyover"),
    3: ("Bretelle d’échangeur ou de raccordement", "Interchange or link slip road"),
    4: ("Voie ferrée", "Railway"),
    5: ("Carrefour aménagé", "Engineered junction"),
    6: ("Zone piétonne", "Pedestrian zone"),
    7: ("Zone de péage", "Toll zone"),
    8: ("Chantier", "Roadworks"),
    9: ("Autres", "Other"),
}

_SITU: _Codes = {
    -1: _NR,
    0: ("Aucun", "None"),
    1: ("Sur chaussée", "On the carriageway"),
    2: ("Sur bande d’arrêt d’urgence", "On the hard shoulder"),
    3: ("Sur accotement", "On the verge"),
    4: ("Sur trottoir", "On the pavement"),
    5: ("Sur piste cyclable", "On a cycle track"),
    6: ("Sur autre voie spéciale", "On another special lane"),
    8: ("Autres", "Other"),
}

_SENC: _Codes = {
    -1: _NR,
    0: ("Inconnu", "Unknown"),
    1: (
        "PK ou PR ou numéro d’adresse postale croissant",
        "Increasing kilometre point, reference point or street number",
    ),
    2: (
        "PK ou PR ou numéro d’adresse postale décroissant",
        "Decreasing kilometre point, reference point or street number",
    ),
    3: ("Absence de repère", "No reference point"),
}

_UNUSED = "Référence inutilisée depuis 2006"
_UNUSED_EN = "Code unused since 2006"

_CATV: _Codes = {
    0: ("Indéterminable", "Indeterminable"),
    1: ("Bicyclette", "Bicycle"),
    2: ("Cyclomoteur <50cm3", "Moped < 50 cc"),
    3: (
        ('Voiturette (Quadricycle à moteur carrossé) (anciennement "voiturette ou tricycle à moteur")'),
        ('Microcar (enclosed motor quadricycle) (formerly "microcar or motor tricycle")'),
    ),
    4: (f"{_UNUSED} (scooter immatriculé)", f"{_UNUSED_EN} (registered scooter)"),
    5: (f"{_UNUSED} (motocyclette)", f"{_UNUSED_EN} (motorcycle)"),
    6: (f"{_UNUSED} (side-car)", f"{_UNUSED_EN} (sidecar)"),
    7: ("VL seul", "Car (light vehicle) alone"),
    8: (f"{_UNUSED} (VL + caravane)", f"{_UNUSED_EN} (car + caravan)"),
    9: (f"{_UNUSED} (VL + remorque)", f"{_UNUSED_EN} (car + trailer)"),
    10: (
        ("VU seul 1,5T <= PTAC <= 3,5T avec ou sans remorque (anciennement VU seul 1,5T <= PTAC <= 3,5T)"),
        (
            "Light commercial vehicle 1.5 t <= GVW <= 3.5 t with or without trailer "
            "(formerly light commercial vehicle alone 1.5 t <= GVW <= 3.5 t)"
        ),
    ),
    11: (f"{_UNUSED} (VU (10) + caravane)", f"{_UNUSED_EN} (LCV (10) + caravan)"),
    12: (f"{_UNUSED} (VU (10) + remorque)", f"{_UNUSED_EN} (LCV (10) + trailer)"),
    13: (
        "PL seul 3,5T <PTCA <= 7,5T",
        "Heavy goods vehicle alone 3.5 t < GVW <= 7.5 t",
    ),
    14: ("PL seul > 7,5T", "Heavy goods vehicle alone > 7.5 t"),
    15: ("PL > 3,5T + remorque", "Heavy goods vehicle > 3.5 t + trailer"),
    16: ("Tracteur routier seul", "Road tractor alone"),
    17: ("Tracteur routier + semi-remorque", "Road tractor + semi-trailer"),
    18: (f"{_UNUSED} (transport en commun)", f"{_UNUSED_EN} (public transport)"),
    19: (f"{_UNUSED} (tramway)", f"{_UNUSED_EN} (tram)"),
    20: ("Engin spécial", "Special-purpose vehicle"),
    21: ("Tracteur agricole", "Agricultural tractor"),
    30: ("Scooter < 50 cm3", "Scooter < 50 cc"),
    31: ("Motocyclette > 50 cm 3 et <= 125 cm3", "Motorcycle > 50 cc and <= 125 cc"),
    32: ("Scooter > 50 cm3 et <= 125 cm3", "Scooter > 50 cc and <= 125 cc"),
    33: ("Motocyclette > 125 cm 3", "Motorcycle > 125 cc"),
    34: ("Scooter > 125 cm3", "Scooter > 125 cc"),
    35: (
        "Quad léger <= 50 cm 3 (Quadricycle à moteur non carrossé)",
        "Light quad <= 50 cc (open motor quadricycle)",
    ),
    36: (
        "Quad lourd > 50 cm 3 (Quadricycle à moteur non carrossé)",
        "Heavy quad > 50 cc (open motor quadricycle)",
    ),
    37: ("Autobus", "Bus"),
    38: ("Autocar", "Coach"),
    39: ("Train", "Train"),
    40: ("Tramway", "Tram"),
    41: ("3RM <= 50 cm3", "Motor tricycle <= 50 cc"),
    42: ("3RM > 50 cm3 <= 125 cm3", "Motor tricycle > 50 cc and <= 125 cc"),
    43: ("3RM > 125 cm3", "Motor tricycle > 125 cc"),
    50: ("EDP à moteur", "Motorised personal mobility device (e-scooter etc.)"),
    60: ("EDP sans moteur", "Non-motorised personal mobility device"),
    80: ("VAE", "Electrically assisted bicycle (e-bike)"),
    99: ("Autre véhicule", "Other vehicle"),
}

_OBS: _Codes = {
    -1: _NR,
    0: ("Sans objet", "Not applicable"),
    1: ("Véhicule en stationnement", "Parked vehicle"),
    2: ("Arbre", "Tree"),
    3: ("Glissière métallique", "Metal crash barrier"),
    4: ("Glissière béton", "Concrete crash barrier"),
    5: ("Autre glissière", "Other crash barrier"),
    6: ("Bâtiment, mur, pile de pont", "Building, wall, bridge pier"),
    7: (
        "Support de signalisation verticale ou poste d’appel d’urgence",
        "Road sign support or emergency call box",
    ),
    8: ("Poteau", "Pole"),
    9: ("Mobilier urbain", "Street furniture"),
    10: ("Parapet", "Parapet"),
    11: ("Ilot, refuge, borne haute", "Traffic island, refuge, high bollard"),
    12: ("Bordure de trottoir", "Kerb"),
    13: ("Fossé, talus, paroi rocheuse", "Ditch, embankment, rock face"),
    14: ("Autre obstacle fixe sur chaussée", "Other fixed obstacle on the carriageway"),
    15: (
        "Autre obstacle fixe sur trottoir ou accotement",
        "Other fixed obstacle on the pavement or verge",
    ),
    16: (
        "Sortie de chaussée sans obstacle",
        "Left the road without hitting an obstacle",
    ),
    17: ("Buse – tête d’aqueduc", "Culvert - culvert head"),
}

_OBSM: _Codes = {
    -1: _NR,
    0: ("Aucun", "None"),
    1: ("Piéton", "Pedestrian"),
    2: ("Véhicule", "Vehicle"),
    4: ("Véhicule sur rail", "Rail vehicle"),
    5: ("Animal domestique", "Domestic animal"),
    6: ("Animal sauvage", "Wild animal"),
    9: ("Autre", "Other"),
}

_CHOC: _Codes = {
    -1: _NR,
    0: ("Aucun", "None"),
    1: ("Avant", "Front"),
    2: ("Avant droit", "Front right"),
    3: ("Avant gauche", "Front left"),
    4: ("Arrière", "Rear"),
    5: ("Arrière droit", "Rear right"),
    6: ("Arrière gauche", "Rear left"),
    7: ("Côté droit", "Right side"),
    8: ("Côté gauche", "Left side"),
    9: ("Chocs multiples (tonneaux)", "Multiple impacts (rollover)"),
}

_MANV: _Codes = {
    -1: _NR,
    0: ("Inconnue", "Unknown"),
    1: ("Sans changement de direction", "No change of direction"),
    2: ("Même sens, même file", "Same direction, same lane"),
    3: ("Entre 2 files", "Between 2 lanes"),
    4: ("En marche arrière", "Reversing"),
    5: ("A contresens", "Driving the wrong way"),
    6: ("En franchissant le terre-plein central", "Crossing the central reservation"),
    7: ("Dans le couloir bus, dans le même sens", "In the bus lane, same direction"),
    8: (
        "Dans le couloir bus, dans le sens inverse",
        "In the bus lane, opposite direction",
    ),
    9: ("En s’insérant", "Merging"),
    10: ("En faisant demi-tour sur la chaussée", "Making a U-turn on the carriageway"),
    11: ("Changeant de file – A gauche", "Changing lane - to the left"),
    12: ("Changeant de file – A droite", "Changing lane - to the right"),
    13: ("Déporté – A gauche", "Drifting - to the left"),
    14: ("Déporté – A droite", "Drifting - to the right"),
    15: ("Tournant – A gauche", "Turning - left"),
    16: ("Tournant – A droite", "Turning - right"),
    17: ("Dépassant – A gauche", "Overtaking - on the left"),
    18: ("Dépassant – A droite", "Overtaking - on the right"),
    19: ("Traversant la chaussée", "Crossing the carriageway"),
    20: ("Manœuvre de stationnement", "Parking manoeuvre"),
    21: ("Manœuvre d’évitement", "Avoidance manoeuvre"),
    22: ("Ouverture de porte", "Opening a door"),
    23: ("Arrêté (hors stationnement)", "Stopped (not parked)"),
    24: ("En stationnement (avec occupants", "Parked (with occupants)"),  # sic
    25: ("Circulant sur trottoir", "Driving on the pavement"),
    26: ("Autres manœuvres", "Other manoeuvres"),
}

_MOTOR: _Codes = {
    -1: _NR,
    0: ("Inconnue", "Unknown"),
    1: ("Hydrocarbures", "Hydrocarbon fuel"),
    2: ("Hybride électrique", "Hybrid electric"),
    3: ("Electrique", "Electric"),
    4: ("Hydrogène", "Hydrogen"),
    5: ("Humaine", "Human-powered"),
    6: ("Autre", "Other"),
}

# The codebook gives 1..9 as a picture (car seen from above, front to the right,
# French driver on the left): front row 1 (left) 6 (middle) 2 (right); middle
# row 7 (left) 8 (middle) 9 (right); rear row 4 (left) 5 (middle) 3 (right).
# Motorcycle: 1 rider, 2 pillion, 3 sidecar. Buses repeat rows 7/8/9.
_PLACE: _Codes = {
    1: ("Conducteur (avant gauche)", "Driver (front left)"),
    2: ("Avant droit (moto : passager)", "Front right (motorcycle: pillion)"),
    3: ("Arrière droit (moto : side-car)", "Rear right (motorcycle: sidecar)"),
    4: ("Arrière gauche", "Rear left"),
    5: ("Arrière milieu", "Rear middle"),
    6: ("Avant milieu", "Front middle"),
    7: ("Rangée intermédiaire gauche", "Middle row left"),
    8: ("Rangée intermédiaire milieu", "Middle row middle"),
    9: ("Rangée intermédiaire droite", "Middle row right"),
    10: ("Piéton (non applicable)", "Pedestrian (not applicable)"),
}

_CATU: _Codes = {
    1: ("Conducteur", "Driver"),
    2: ("Passager", "Passenger"),
    3: ("Piéton", "Pedestrian"),
}

_GRAV: _Codes = {
    1: ("Indemne", "Unharmed"),
    2: ("Tué", "Killed"),
    3: ("Blessé hospitalisé", "Hospitalised injury"),
    4: ("Blessé léger", "Slight injury"),
}

_SEXE: _Codes = {
    1: ("Masculin", "Male"),
    2: ("Féminin", "Female"),
}

_TRAJET: _Codes = {
    -1: _NR,
    0: _NR,
    1: ("Domicile – travail", "Home - work"),
    2: ("Domicile – école", "Home - school"),
    3: ("Courses – achats", "Shopping"),
    4: ("Utilisation professionnelle", "Professional use"),
    5: ("Promenade – loisirs", "Leisure - outing"),
    9: ("Autre", "Other"),
}

_SECU: _Codes = {
    -1: _NR,
    0: ("Aucun équipement", "No equipment"),
    1: ("Ceinture", "Seat belt"),
    2: ("Casque", "Helmet"),
    3: ("Dispositif enfants", "Child restraint"),
    4: ("Gilet réfléchissant", "Reflective vest"),
    5: ("Airbag (2RM/3RM)", "Airbag (powered two/three-wheeler)"),
    6: ("Gants (2RM/3RM)", "Gloves (powered two/three-wheeler)"),
    7: ("Gants + Airbag (2RM/3RM)", "Gloves + airbag (powered two/three-wheeler)"),
    8: ("Non déterminable", "Cannot be determined"),
    9: ("Autre", "Other"),
}

_LOCP: _Codes = {
    -1: _NR,
    0: ("Sans objet", "Not applicable"),
    1: (
        "Sur chaussée – A + 50 m du passage piéton",
        "On the carriageway - more than 50 m from a pedestrian crossing",
    ),
    2: (
        "Sur chaussée – A – 50 m du passage piéton",
        "On the carriageway - less than 50 m from a pedestrian crossing",
    ),
    3: (
        "Sur passage piéton – Sans signalisation lumineuse",
        "On a pedestrian crossing - without traffic lights",
    ),
    4: (
        "Sur passage piéton – Avec signalisation lumineuse",
        "On a pedestrian crossing - with traffic lights",
    ),
    5: ("Sur trottoir", "On the pavement"),
    6: ("Sur accotement", "On the verge"),
    7: ("Sur refuge ou BAU", "On a refuge or hard shoulder"),
    8: ("Sur contre allée", "On a service road"),
    9: ("Inconnue", "Unknown"),
}

_ACTP: _Codes = {
    -1: _NR,
    0: ("Non renseigné ou sans objet", "Not recorded or not applicable"),
    1: (
        "Se déplaçant – Sens véhicule heurtant",
        "Moving - in the direction of the striking vehicle",
    ),
    2: (
        "Se déplaçant – Sens inverse du véhicule",
        "Moving - in the opposite direction to the vehicle",
    ),
    3: ("Traversant", "Crossing"),
    4: ("Masqué", "Hidden from view"),
    5: ("Jouant – courant", "Playing - running"),
    6: ("Avec animal", "With an animal"),
    9: ("Autre", "Other"),
    ACTP_LETTERS["A"]: (
        "A – Monte/descend du véhicule",
        "A - Getting on/off the vehicle",
    ),
    ACTP_LETTERS["B"]: ("B – Inconnue", "B - Unknown"),
}

_ETATP: _Codes = {
    -1: _NR,
    1: ("Seul", "Alone"),
    2: ("Accompagné", "Accompanied"),
    3: ("En groupe", "In a group"),
}

# ---------------------------------------------------------------------------
# Column descriptions: (table, name, fr, en, codes).
# ---------------------------------------------------------------------------

_ACC_FR = "Identifiant de l’accident"
_ACC_EN = "Accident identifier"
_IDV_FR = "Identifiant unique du véhicule – Code numérique"
_IDV_EN = "Unique vehicle identifier (numeric)"
_NUMV_FR = "Identifiant du véhicule – Code alphanumérique"
_NUMV_EN = "Vehicle identifier within the accident (alphanumeric, e.g. A01)"
_SECU_FR = "Le renseignement du caractère indique la présence et l’utilisation de l’équipement de sécurité"
_PR_NOTE = "La valeur -1 signifie que le PR n’est pas renseigné."

_SPECS: tuple[tuple[str, str, str, str, _Codes | None], ...] = (
    # caracteristiques
    (
        "caracteristiques",
        "Num_Acc",
        "Numéro d'identifiant de l’accident",
        _ACC_EN,
        None,
    ),
    ("caracteristiques", "jour", "Jour de l'accident", "Day of the month", None),
    ("caracteristiques", "mois", "Mois de l'accident", "Month", None),
    ("caracteristiques", "an", "Année de l'accident", "Year", None),
    (
        "caracteristiques",
        "hrmn",
        "Heure et minutes de l'accident",
        "Time (HH:MM)",
        None,
    ),
    (
        "caracteristiques",
        "lum",
        "Lumière : conditions d’éclairage dans lesquelles l'accident s'est produit",
        "Lighting conditions in which the accident occurred",
        _LUM,
    ),
    (
        "caracteristiques",
        "dep",
        "Département : Code INSEE du département (2A Corse-du-Sud – 2B Haute-Corse)",
        "Département INSEE code (2A Corse-du-Sud, 2B Haute-Corse)",
        None,
    ),
    (
        "caracteristiques",
        "com",
        "Commune : code INSEE du département suivi par 3 chiffres",
        "Municipality INSEE code (département code followed by 3 digits)",
        None,
    ),
    ("caracteristiques", "agg", "Localisation", "Built-up area or not", _AGG),
    ("caracteristiques", "int", "Intersection", "Intersection type", _INT),
    (
        "caracteristiques",
        "atm",
        "Conditions atmosphériques",
        "Weather conditions",
        _ATM,
    ),
    ("caracteristiques", "col", "Type de collision", "Collision type", _COL),
    (
        "caracteristiques",
        "adr",
        ("Adresse postale : variable renseignée pour les accidents survenus en agglomération"),
        "Postal address (filled in for accidents inside built-up areas)",
        None,
    ),
    ("caracteristiques", "lat", "Latitude", "Latitude (WGS84)", None),
    ("caracteristiques", "long", "Longitude", "Longitude (WGS84)", None),
    # lieux
    ("lieux", "Num_Acc", _ACC_FR, _ACC_EN, None),
    ("lieux", "catr", "Catégorie de route", "Road category", _CATR),
    ("lieux", "voie", "Numéro de la route", "Road number", None),
    (
        "lieux",
        "v1",
        "Indice numérique du numéro de route (exemple : 2 bis, 3 ter etc.)",
        "Numeric suffix of the road number (e.g. 2 bis, 3 ter)",
        None,
    ),
    (
        "lieux",
        "v2",
        "Lettre indice alphanumérique de la route",
        "Alphanumeric letter suffix of the road",
        None,
    ),
    ("lieux", "circ", "Régime de circulation", "Traffic flow regime", _CIRC),
    (
        "lieux",
        "nbv",
        "Nombre total de voies de circulation",
        "Total number of traffic lanes",
        None,
    ),
    (
        "lieux",
        "vosp",
        (
            "Signale l’existence d’une voie réservée, indépendamment du fait que "
            "l’accident ait lieu ou non sur cette voie"
        ),
        "Reserved lane present, whether or not the accident happened on it",
        _VOSP,
    ),
    (
        "lieux",
        "prof",
        "Profil en long décrit la déclivité de la route à l'endroit de l'accident",
        "Longitudinal profile (gradient) of the road at the accident site",
        _PROF,
    ),
    (
        "lieux",
        "pr",
        f"Numéro du PR de rattachement (numéro de la borne amont). {_PR_NOTE}",
        "Reference marker number (upstream milestone); -1 means not recorded",
        None,
    ),
    (
        "lieux",
        "pr1",
        f"Distance en mètres au PR (par rapport à la borne amont). {_PR_NOTE}",
        "Distance in metres to the upstream reference marker; -1 means not recorded",
        None,
    ),
    ("lieux", "plan", "Tracé en plan", "Horizontal alignment", _PLAN),
    (
        "lieux",
        "lartpc",
        "Largeur du terre-plein central (TPC) s'il existe (en m)",
        "Width of the central reservation, if any (m)",
        None,
    ),
    (
        "lieux",
        "larrout",
        (
            "Largeur de la chaussée affectée à la circulation des véhicules ne sont pas "
            "compris les bandes d'arrêt d'urgence, les TPC et les places de "
            "stationnement (en m)"
        ),
        (
            "Width of the carriageway used by traffic, excluding hard shoulders, "
            "central reservations and parking spaces (m)"
        ),
        None,
    ),
    ("lieux", "surf", "Etat de la surface", "Road surface condition", _SURF),
    (
        "lieux",
        "infra",
        "Aménagement - Infrastructure",
        "Infrastructure feature",
        _INFRA,
    ),
    ("lieux", "situ", "Situation de l’accident", "Position of the accident", _SITU),
    (
        "lieux",
        "vma",
        "Vitesse maximale autorisée sur le lieu et au moment de l’accident",
        "Speed limit at the place and time of the accident (km/h)",
        None,
    ),
    # vehicules
    ("vehicules", "Num_Acc", _ACC_FR, _ACC_EN, None),
    ("vehicules", "id_vehicule", _IDV_FR, _IDV_EN, None),
    ("vehicules", "num_veh", _NUMV_FR, _NUMV_EN, None),
    ("vehicules", "senc", "Sens de circulation", "Direction of travel", _SENC),
    ("vehicules", "catv", "Catégorie du véhicule", "Vehicle category", _CATV),
    ("vehicules", "obs", "Obstacle fixe heurté", "Fixed obstacle struck", _OBS),
    ("vehicules", "obsm", "Obstacle mobile heurté", "Moving obstacle struck", _OBSM),
    ("vehicules", "choc", "Point de choc initial", "Initial point of impact", _CHOC),
    (
        "vehicules",
        "manv",
        "Manoeuvre principale avant l’accident",
        "Main manoeuvre before the accident",
        _MANV,
    ),
    (
        "vehicules",
        "motor",
        "Type de motorisation du véhicule",
        "Vehicle power source",
        _MOTOR,
    ),
    (
        "vehicules",
        "occutc",
        "Nombre d’occupants dans le transport en commun",
        "Number of occupants of the public transport vehicle",
        None,
    ),
    # usagers
    ("usagers", "Num_Acc", _ACC_FR, _ACC_EN, None),
    ("usagers", "id_vehicule", _IDV_FR, _IDV_EN, None),
    ("usagers", "num_veh", _NUMV_FR, _NUMV_EN, None),
    (
        "usagers",
        "place",
        ("Permet de situer la place occupée dans le véhicule par l'usager au moment de l'accident"),
        "Seat occupied by the road user at the time of the accident",
        _PLACE,
    ),
    ("usagers", "catu", "Catégorie d'usager", "Road user category", _CATU),
    ("usagers", "grav", "Gravité de blessure de l'usager", "Injury severity", _GRAV),
    ("usagers", "sexe", "Sexe de l'usager", "Sex of the road user", _SEXE),
    ("usagers", "an_nais", "Année de naissance de l'usager", "Year of birth", None),
    (
        "usagers",
        "trajet",
        "Motif du déplacement au moment de l’accident",
        "Purpose of the journey at the time of the accident",
        _TRAJET,
    ),
    ("usagers", "secu1", _SECU_FR, "Safety equipment used (1st)", _SECU),
    ("usagers", "secu2", _SECU_FR, "Safety equipment used (2nd)", _SECU),
    ("usagers", "secu3", _SECU_FR, "Safety equipment used (3rd)", _SECU),
    ("usagers", "locp", "Localisation du piéton", "Pedestrian location", _LOCP),
    ("usagers", "actp", "Action du piéton", "Pedestrian action", _ACTP),
    (
        "usagers",
        "etatp",
        "Cette variable permet de préciser si le piéton accidenté était seul ou non",
        "Whether the injured pedestrian was alone or not",
        _ETATP,
    ),
)


def _build_column(table: str, name: str, fr: str, en: str, documented: _Codes | None) -> Column:
    """Build a Column, adding the undocumented codes seen in the real data."""
    key = f"{table}.{name}"
    merged: _Codes = {}
    if key in UNDOCUMENTED_MISSING:
        merged[-1] = NOT_RECORDED
    merged.update(documented or {})
    merged.update(UNDOCUMENTED_CODES.get(key, {}))
    ordered = dict(sorted(merged.items()))
    return Column(name=name, table=table, fr=fr, en=en, codes=MappingProxyType(ordered))


COLUMNS: Final[Mapping[str, Column]] = MappingProxyType(
    {f"{spec[0]}.{spec[1]}": _build_column(*spec) for spec in _SPECS}
)

_BY_NAME: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: tuple(k for k, c in COLUMNS.items() if c.name == name) for name in {c.name for c in COLUMNS.values()}}
)


def get_column(name: str) -> Column:
    """Return the Column for ``"table.column"`` or for a bare name unique among tables."""
    if "." in name:
        if name in COLUMNS:
            return COLUMNS[name]
        hint = get_close_matches(name, list(COLUMNS), n=3)
        raise KeyError(
            f"Unknown BAAC column {name!r}: expected 'table.column' with table in "
            f"{', '.join(TABLES)}" + (f"; did you mean {', '.join(hint)}?" if hint else "")
        )
    keys = _BY_NAME.get(name, ())
    if len(keys) == 1:
        return COLUMNS[keys[0]]
    if keys:
        raise KeyError(
            f"BAAC column {name!r} exists in several tables ({', '.join(keys)}); "
            f"use the qualified form, e.g. {keys[0]!r}"
        )
    hint = get_close_matches(name, list(_BY_NAME), n=3)
    raise KeyError(f"Unknown BAAC column {name!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))


def codes(column: str) -> dict[int, tuple[str, str]]:
    """Return a copy of ``code -> (french label, english label)`` for a column.

    ``column`` is ``"lum"`` or ``"caracteristiques.lum"``; free/numeric columns
    give an empty dict. Raises KeyError for an unknown or ambiguous name.
    """
    return dict(get_column(column).codes)


def allowed(column: str) -> frozenset[int]:
    """Return the set of valid codes of a column (empty for free/numeric columns)."""
    return frozenset(get_column(column).codes)


def _lower_first(text: str) -> str:
    """Lower-case the first letter of a capitalised word, keeping acronyms."""
    if len(text) > 1 and text[0].isupper() and text[1].isalpha() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def label(column: str, code: int, lang: str = "fr") -> str:
    """Return the label of ``code`` in ``column``.

    ``lang`` is ``"fr"``, ``"en"`` or ``"both"`` (``"Plein jour (full daylight)"``).
    Raises KeyError for an unknown column or code, ValueError for an unknown lang.
    """
    col = get_column(column)
    if lang not in ("fr", "en", "both"):
        raise ValueError(f"lang must be 'fr', 'en' or 'both', not {lang!r}")
    try:
        fr, en = col.codes[code]
    except KeyError:
        raise KeyError(f"Code {code!r} is not in the codebook for {col.key}; allowed: {sorted(col.codes)}") from None
    if lang == "fr":
        return fr
    if lang == "en":
        return en
    return f"{fr} ({_lower_first(en)})"


def parse_code(column: str, raw: str) -> int | None:
    """Parse a raw CSV cell of a coded column into its int code.

    Strips spaces (missing codes are written ``" -1"``), maps the actp letters
    with ``ACTP_LETTERS`` and returns None for an empty cell or ``"."``.
    Raises ValueError for a non-integer value.
    """
    value = raw.strip()
    if value in ("", "."):
        return None
    if get_column(column).key == "usagers.actp" and value in ACTP_LETTERS:
        return ACTP_LETTERS[value]
    return int(value)
