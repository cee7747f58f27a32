"""Reference lists for the demo generator: German names with frequencies, nicknames, places."""

from __future__ import annotations

# (name, relative frequency). Frequent names make same-name different-person pairs common.
FEMALE_FIRST = [
    ("Anna", 30), ("Maria", 28), ("Katharina", 22), ("Elisabeth", 14), ("Stefanie", 16),
    ("Sabine", 20), ("Susanne", 18), ("Claudia", 15), ("Julia", 24), ("Laura", 15), ("Lea", 10),
    ("Sophie", 12), ("Franziska", 11), ("Christina", 12), ("Gabriele", 10), ("Barbara", 9),
    ("Margarete", 6), ("Daniela", 11), ("Alexandra", 9), ("Jennifer", 8), ("Nicole", 13),
    ("Petra", 12), ("Monika", 11), ("Andrea", 14), ("Birgit", 8), ("Jessica", 7), ("Lena", 12),
    ("Johanna", 9), ("Charlotte", 7), ("Hannah", 10), ("Jürgen", 0), ("Sarah", 13), ("Melanie", 9),
    ("Ursula", 7), ("Heike", 8), ("Karin", 8), ("Ingrid", 5), ("Renate", 6), ("Emma", 9),
    ("Mia", 8), ("Zoë", 2), ("Bärbel", 3), ("Jörg", 0), ("Sünje", 1), ("Patricia", 5),
]
MALE_FIRST = [
    ("Thomas", 30), ("Michael", 30), ("Andreas", 24), ("Stefan", 22), ("Christian", 22),
    ("Alexander", 20), ("Johannes", 15), ("Markus", 18), ("Martin", 18), ("Peter", 17),
    ("Wolfgang", 12), ("Klaus", 11), ("Jürgen", 12), ("Frank", 13), ("Matthias", 14),
    ("Sebastian", 14), ("Daniel", 16), ("Tobias", 12), ("Florian", 12), ("Maximilian", 10),
    ("Friedrich", 6), ("Nikolaus", 4), ("Heinrich", 5), ("Wilhelm", 5), ("Josef", 6),
    ("Ulrich", 7), ("Manfred", 6), ("Benjamin", 8), ("Jakob", 7), ("Lukas", 10), ("Jonas", 9),
    ("Felix", 9), ("Paul", 10), ("Jörg", 8), ("Uwe", 7), ("Dieter", 6), ("Günter", 5),
    ("Björn", 4), ("René", 4), ("Sören", 3), ("Ömer", 3), ("Mehmet", 4), ("Leon", 8),
]
NICKNAMES = {
    "Johannes": ["Hans", "Jo"], "Katharina": ["Kathi", "Katja", "Kati"], "Elisabeth": ["Lisa", "Elli", "Liesel"],
    "Alexander": ["Alex"], "Alexandra": ["Alex", "Sandra"], "Christian": ["Chris"],
    "Christina": ["Tina", "Chris"], "Michael": ["Micha", "Michi"], "Thomas": ["Tom", "Thomy"],
    "Stefanie": ["Steffi"], "Wolfgang": ["Wolf"], "Margarete": ["Grete", "Margit"],
    "Friedrich": ["Fritz"], "Maximilian": ["Max"], "Nikolaus": ["Klaus", "Nico"],
    "Andreas": ["Andi"], "Daniela": ["Dani"], "Franziska": ["Franzi"], "Susanne": ["Susi"],
    "Gabriele": ["Gabi"], "Sebastian": ["Basti"], "Matthias": ["Matze"], "Benjamin": ["Ben"],
    "Barbara": ["Babsi"], "Wilhelm": ["Willi"], "Heinrich": ["Heinz"], "Josef": ["Sepp"],
    "Ulrich": ["Uli"], "Manfred": ["Manni"], "Patricia": ["Patti"], "Jennifer": ["Jenny"],
    "Johanna": ["Hanna"], "Daniel": ["Dani"], "Tobias": ["Tobi"], "Florian": ["Flo"],
    "Markus": ["Mark"], "Stefan": ["Steffen"], "Martin": ["Martl"], "Jakob": ["Jaki"],
}
LAST = [
    ("Müller", 60), ("Schmidt", 50), ("Schneider", 35), ("Fischer", 32), ("Weber", 30),
    ("Meyer", 30), ("Wagner", 26), ("Becker", 25), ("Schulz", 24), ("Hoffmann", 24),
    ("Schäfer", 20), ("Koch", 18), ("Bauer", 18), ("Richter", 17), ("Klein", 17), ("Wolf", 16),
    ("Schröder", 16), ("Neumann", 15), ("Schwarz", 15), ("Zimmermann", 14), ("Braun", 14),
    ("Krüger", 13), ("Hofmann", 13), ("Hartmann", 12), ("Lange", 12), ("Schmitt", 12),
    ("Werner", 12), ("Schmitz", 11), ("Krause", 11), ("Meier", 11), ("Lehmann", 11),
    ("Schmid", 10), ("Schulze", 10), ("Maier", 10), ("Köhler", 10), ("Herrmann", 10),
    ("König", 9), ("Walter", 9), ("Mayer", 9), ("Huber", 9), ("Kaiser", 8), ("Fuchs", 8),
    ("Peters", 8), ("Lang", 8), ("Scholz", 8), ("Möller", 8), ("Weiß", 8), ("Jung", 8),
    ("Hahn", 7), ("Schubert", 7), ("Vogel", 7), ("Friedrich", 7), ("Keller", 7), ("Günther", 7),
    ("Frank", 6), ("Berger", 6), ("Winkler", 6), ("Roth", 6), ("Beck", 6), ("Lorenz", 6),
    ("Baumann", 6), ("Franke", 6), ("Albrecht", 6), ("Schuster", 6), ("Simon", 6), ("Ludwig", 6),
    ("Böhm", 5), ("Winter", 5), ("Kraus", 5), ("Martin", 5), ("Schumacher", 5), ("Krämer", 5),
    ("Vogt", 5), ("Stein", 5), ("Jäger", 5), ("Otto", 5), ("Sommer", 5), ("Groß", 5),
    ("Seidel", 5), ("Heinrich", 5), ("Brandt", 5), ("Haas", 5), ("Schreiber", 5), ("Graf", 5),
    ("Dietrich", 4), ("Ziegler", 4), ("Kuhn", 4), ("Kühn", 4), ("Pohl", 4), ("Engel", 4),
    ("Horn", 4), ("Busch", 4), ("Bergmann", 4), ("Thomas", 4), ("Voigt", 4), ("Sauer", 4),
    ("Arnold", 4), ("Wolff", 4), ("Pfeiffer", 4), ("Yılmaz", 3), ("Kaya", 3), ("Nowak", 3),
    ("Kowalski", 3), ("Lütke", 2), ("Jürgens", 3), ("Förster", 3), ("Bäcker", 2), ("Gößling", 1),
    ("Öztürk", 2), ("Dreßler", 2), ("Strauß", 3), ("Süß", 2), ("Rößler", 2), ("Häusler", 2),
]
# (city, postcode prefix, weight). Postcodes are prefix + three random digits.
CITIES = [
    ("Berlin", "10", 40), ("Hamburg", "20", 22), ("München", "80", 18), ("Köln", "50", 13),
    ("Frankfurt am Main", "60", 9), ("Stuttgart", "70", 8), ("Düsseldorf", "40", 8),
    ("Leipzig", "04", 7), ("Dortmund", "44", 7), ("Essen", "45", 7), ("Bremen", "28", 7),
    ("Dresden", "01", 7), ("Hannover", "30", 6), ("Nürnberg", "90", 6), ("Duisburg", "47", 6),
    ("Bochum", "44", 4), ("Wuppertal", "42", 4), ("Bielefeld", "33", 4), ("Bonn", "53", 4),
    ("Münster", "48", 4), ("Mannheim", "68", 4), ("Karlsruhe", "76", 4), ("Augsburg", "86", 4),
    ("Wiesbaden", "65", 3), ("Mönchengladbach", "41", 3), ("Gelsenkirchen", "45", 3),
    ("Aachen", "52", 3), ("Braunschweig", "38", 3), ("Kiel", "24", 3), ("Chemnitz", "09", 3),
    ("Halle (Saale)", "06", 3), ("Magdeburg", "39", 3), ("Freiburg im Breisgau", "79", 3),
    ("Krefeld", "47", 3), ("Mainz", "55", 3), ("Lübeck", "23", 3), ("Erfurt", "99", 3),
    ("Rostock", "18", 3), ("Kassel", "34", 3), ("Saarbrücken", "66", 2), ("Potsdam", "14", 2),
    ("Würzburg", "97", 2), ("Göttingen", "37", 2), ("Regensburg", "93", 2), ("Jena", "07", 2),
]
STREETS = [
    "Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße",
    "Birkenweg", "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße", "Schillerstraße",
    "Goethestraße", "Mühlenweg", "Wiesenweg", "Am Markt", "Friedrichstraße", "Marktplatz",
    "Rosenstraße", "Lessingstraße", "Mozartstraße", "Kastanienallee", "Poststraße",
    "Beethovenstraße", "Uhlandstraße", "Blumenstraße", "Feldstraße", "Parkstraße",
    "Talstraße", "Sonnenstraße", "Königsallee", "Am Sportplatz", "Rathausplatz", "Eichenweg",
]
EMAIL_DOMAINS = [("gmail.com", 30), ("web.de", 25), ("gmx.de", 25), ("t-online.de", 12),
                 ("outlook.de", 6), ("yahoo.de", 4), ("posteo.de", 2), ("icloud.com", 4)]
COMPANIES = ["Nordlicht Logistik GmbH", "Bergmann & Söhne KG", "Alpenblick Hotels AG",
             "Rheinwerk Maschinenbau GmbH", "Spreewald Feinkost GmbH", "Hansa Medien GmbH",
             "Isar Solar GmbH", "Elbtal Bau AG", "Main Finanzberatung GmbH", "Weser Werft GmbH",
             "Taunus Software GmbH", "Schwarzwald Uhren KG", "Ostsee Reisen GmbH",
             "Harz Holzbau GmbH", "Ruhr Energie AG", "Mosel Weinhandel GmbH"]
CATEGORIES = ["fashion", "shoes", "electronics", "home", "beauty", "sports", "books", "toys"]
# categories bought together more often than chance
CATEGORY_AFFINITY = [("fashion", "shoes"), ("sports", "shoes"), ("books", "toys"), ("home", "electronics"),
                     ("beauty", "fashion")]
CATEGORY_PRICE = {"fashion": 39.0, "shoes": 69.0, "electronics": 149.0, "home": 45.0,
                  "beauty": 19.0, "sports": 49.0, "books": 14.0, "toys": 25.0}
# Acquisition channels: weight, and cost per acquired customer for paid channels (EUR).
CHANNELS = {"organic_search": (0.24, 0.0), "paid_search": (0.22, 38.0), "social": (0.17, 29.0),
            "display": (0.07, 45.0), "affiliate": (0.10, 24.0), "email": (0.08, 6.0),
            "referral": (0.07, 0.0), "sales": (0.05, 120.0)}
TICKET_CATEGORIES = ["delivery", "return", "payment", "product_defect", "account", "other"]
NPS_COMMENTS = {
    "low": ["Lieferung viel zu spät", "Kundenservice hat nicht geantwortet", "Retoure kompliziert",
            "Qualität enttäuschend", "Nie wieder"],
    "mid": ["Ganz okay", "Preise könnten besser sein", "Lieferung dauerte etwas", ""],
    "high": ["Super Service!", "Schnelle Lieferung, gerne wieder", "Top Qualität", "Sehr zufrieden", ""],
}
