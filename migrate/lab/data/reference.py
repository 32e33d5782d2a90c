"""Reference data of the synthetic Comune: names and places (with the apostrophes and accents
real data has), its organisation, terminals, work profiles, reason codes, job categories,
unions, disciplinary charges and kinds of personnel documents."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

COMUNE = "Comune di Valdoria"
MONTHS_IT = ["gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
             "settembre", "ottobre", "novembre", "dicembre"]


MALE_NAMES = [
    "Nicolò", "Niccolò", "Giuseppe", "Giovanni", "Antonio", "Marco", "Luca", "Andrea",
    "Francesco", "Alessandro", "Stefano", "Roberto", "Paolo", "Davide", "Simone", "Matteo",
    "Lorenzo", "Gabriele", "Mattia", "Riccardo", "Salvatore", "Vincenzo", "Pietro", "Carlo",
    "Fabrizio", "Massimo", "Gianluca", "Raffaele", "Domenico", "Emanuele", "Michele", "Ciro",
    "Federico", "Daniele", "Gian Maria", "Elia",
]
FEMALE_NAMES = [
    "Maria", "Anna", "Giulia", "Francesca", "Chiara", "Sara", "Lucia", "Paola", "Elena",
    "Federica", "Valentina", "Martina", "Alessandra", "Silvia", "Laura", "Roberta", "Cristina",
    "Simona", "Barbara", "Monica", "Daniela", "Raffaella", "Manuela", "Noemi", "Greta",
    "Beatrice", "Ilaria", "Rosa", "Carmela", "Immacolata", "Maria Grazia", "Anna Maria",
    "Désirée", "Zoe",
]
SURNAMES = [
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
    "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano",
    "Rizzo", "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi",
    "Caruso", "Ferrara", "Galli", "Martini", "Leone", "Longo", "Gentile", "Martinelli",
    "Vitale", "Serra", "Coppola", "De Santis", "D'Angelo", "D'Amico", "D'Alessandro",
    "Dell'Acqua", "Dell'Orto", "Sant'Elia", "D'Urso", "Dall'Ara", "Zappalà", "Cannavò",
    "Gullì", "Nicolò", "Ferrè", "Lo Iacono", "La Rosa", "Dalla Valle", "Di Stefano",
    "Pellegrino", "Palumbo", "Sanna", "Fabbri", "Orlando", "Caputo", "Marchetti", "Farina",
    "Sorrentino", "Parisi", "Cattaneo", "Musumeci",
]
# Foreign-born staff: (country, cadastral code, surnames, male names, female names).
FOREIGN_ORIGINS = [
    ("Spagna", "Z131", ["Fernández", "García", "Muñoz"], ["José", "Jesús"],
     ["Lucía", "Sofía"]),
    ("Romania", "Z129", ["Popescu", "Ionescu"], ["Andrei", "Mihai"], ["Ioana", "Elena"]),
    ("Francia", "Z110", ["Lefèvre", "Dubois"], ["François", "Jérôme"], ["Hélène", "Chloé"]),
    ("Germania", "Z112", ["Müller", "Schäfer"], ["Jürgen", "Lukas"], ["Jördis", "Anna"]),
    ("Albania", "Z100", ["Hoxha", "Shehu"], ["Ardit", "Erion"], ["Elira", "Ana"]),
]
# Italian birth places with their cadastral (Belfiore) codes.
BIRTH_PLACES = [
    ("Roma", "H501"), ("Milano", "F205"), ("Napoli", "F839"), ("Torino", "L219"),
    ("Palermo", "G273"), ("Genova", "D969"), ("Bologna", "A944"), ("Firenze", "D612"),
    ("Bari", "A662"), ("Catania", "C351"), ("Venezia", "L736"), ("Verona", "L781"),
    ("Messina", "F158"), ("Padova", "G224"), ("Brescia", "B157"), ("Forlì", "D704"),
    ("Cantù", "B639"), ("L'Aquila", "A345"), ("Reggio di Calabria", "H224"),
]
RESIDENCES = [
    ("Valdoria", "26900"), ("Valdoria", "26900"), ("Valdoria", "26900"),
    ("Sant'Angelo Lodigiano", "26866"), ("Castell'Arquato", "29014"), ("Cantù", "22063"),
    ("Forlì", "47121"), ("Codogno", "26845"),
]
STREETS = [
    "Via Roma", "Via Giuseppe Garibaldi", "Via dell'Indipendenza", "Piazza Sant'Agostino",
    "Via XX Settembre", "Corso Vittorio Emanuele II", "Via Nicolò Tommaseo",
    "Viale della Libertà", "Via Sant'Antonio", "Vicolo dell'Orto", "Via Papa Giovanni XXIII",
    "Via San Martino", "Largo Cà Rossa",
]

# (code, name, parent code, terminal code, hiring weight)
ORG_UNITS = [
    ("SEG", "Segreteria Generale", None, "T01", 3),
    ("AAG", "Settore Affari Generali", None, "T01", 0),
    ("DEM", "Servizi Demografici e Stato Civile", "AAG", "T02", 10),
    ("PRO", "Ufficio Protocollo e Archivio", "AAG", "T01", 5),
    ("FIN", "Settore Economico-Finanziario", None, "T01", 0),
    ("RAG", "Servizio Ragioneria", "FIN", "T01", 6),
    ("TRI", "Ufficio Tributi", "FIN", "T02", 6),
    ("PER", "Ufficio Personale", "FIN", "T01", 4),
    ("TEC", "Settore Tecnico", None, "T01", 0),
    ("LLP", "Servizio Lavori Pubblici e Manutenzioni", "TEC", "T01", 9),
    ("URB", "Servizio Urbanistica ed Edilizia Privata", "TEC", "T01", 6),
    ("CAN", "Cantiere Comunale", "TEC", "T04", 10),
    ("SOC", "Settore Servizi alla Persona", None, "T05", 0),
    ("SSO", "Servizi Sociali", "SOC", "T05", 8),
    ("SCU", "Servizi Scolastici e Asilo Nido \"L'Aquilone\"", "SOC", "T07", 9),
    ("BIB", "Biblioteca Civica Sant'Agostino", "SOC", "T06", 4),
    ("POL", "Corpo di Polizia Locale", None, "T03", 14),
]
TOP_UNITS_WITH_HEAD = ["AAG", "FIN", "TEC", "SOC", "POL"]

# (code, location, model, ip address or None, installed on)
TERMINALS = [
    ("T01", "Municipio - ingresso dipendenti", "Solari LBX 4000", "10.12.20.11", date(2009, 5, 4)),
    ("T02", "Municipio - piano terra, Demografici", "Solari LBX 4000", "10.12.20.12",
     date(2009, 5, 4)),
    ("T03", "Comando Polizia Locale", "ZKTeco ProCapture", "10.12.21.10", date(2016, 3, 1)),
    ("T04", "Cantiere comunale", "Solari LBX 2000", None, date(2004, 10, 1)),
    ("T05", "Palazzo dei Servizi Sociali", "ZKTeco ProCapture", "10.12.22.10", date(2016, 3, 1)),
    ("T06", "Biblioteca civica", "Solari LBX 2000", "10.12.23.10", date(2011, 9, 12)),
    ("T07", "Asilo nido \"L'Aquilone\"", "ZKTeco SpeedFace", "10.12.24.10", date(2021, 1, 11)),
]

# (code, description, weekly, daily, long-day minutes, long days, start, min lunch, flex)
WORK_PROFILES = [
    ("STD36", "Tempo pieno 36 ore, rientri martedì e giovedì", 2160, 360, 540, [2, 4], "08:00",
     30, 30),
    ("PT30", "Part-time 83,33% (30 ore)", 1800, 360, None, [], "08:00", None, 30),
    ("PT24", "Part-time 66,67% (24 ore)", 1440, 288, None, [], "08:30", None, 30),
    ("PT18", "Part-time 50% (18 ore)", 1080, 216, None, [], "09:00", None, 30),
    ("TURNI", "Turni Polizia Locale 7h12", 2160, 432, None, [], "07:00", None, 15),
]
PROFILE_BY_PART_TIME = {Decimal("100.00"): "STD36", Decimal("83.33"): "PT30",
                        Decimal("66.67"): "PT24", Decimal("50.00"): "PT18"}
SHIFTS = [("M", "Turno mattino", "07:00", "14:12"), ("P", "Turno pomeriggio", "12:48", "20:00")]

# (code, description, kind, special category, GDPR category, counts as work, yearly limit)
REASON_CODES = [
    ("FERIE", "Ferie", "ASSENZA", False, None, True, None),
    ("FESOP", "Festività soppresse", "ASSENZA", False, None, True, 1728),
    ("MAL", "Malattia", "ASSENZA", True, "salute", False, None),
    ("VISMED", "Permesso per visita medica", "PERMESSO", True, "salute", False, 1080),
    ("L104", "Permesso L. 104/1992 - assistenza a familiare con disabilità", "ASSENZA", True,
     "salute (disabilità)", True, None),
    ("PSIND", "Permesso sindacale retribuito", "ASSENZA", True, "appartenenza sindacale", True,
     None),
    ("MATERN", "Congedo di maternità", "ASSENZA", True, "salute", True, None),
    ("DONSAN", "Donazione del sangue", "ASSENZA", True, "salute", True, None),
    ("PBREVE", "Permesso breve da recuperare", "PERMESSO", False, None, False, 2160),
    ("SERV", "Servizio esterno", "SERVIZIO", False, None, True, None),
    ("LAGILE", "Lavoro agile", "LAVORO_AGILE", False, None, True, None),
]

AREAS = {"A": "OPE", "B": "OES", "C": "IST", "D": "FEQ"}
AREA_LABELS = {
    "OPE": "Area degli Operatori",
    "OES": "Area degli Operatori esperti",
    "IST": "Area degli Istruttori",
    "FEQ": "Area dei Funzionari e dell'Elevata Qualificazione",
}
POSITIONS = {"A": 5, "B": 8, "C": 6, "D": 7}  # economic positions per old category
AREA_LETTER = {area: letter for letter, area in AREAS.items()}

UNIONS = ["FP CGIL", "CISL FP", "UIL FPL", "CSA Regioni Autonomie Locali", "USB PI"]
CHARGES = [
    ("Ritardi ripetuti non giustificati", "RIMPROVERO_SCRITTO", False),
    ("Assenza ingiustificata", "MULTA", False),
    ("Comportamento scorretto verso l'utenza", "RIMPROVERO_VERBALE", False),
    ("Falsa attestazione della presenza in servizio (art. 55-quater d.lgs. 165/2001)",
     "SOSPENSIONE", True),
]
DOC_KINDS = ["contratto", "documento-identita", "curriculum", "atto-nomina", "delega-sindacale",
             "verbale-104", "giudizio-idoneita", "valutazione", "provvedimento-disciplinare"]
