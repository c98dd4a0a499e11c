"""The fact world's templates, by version (issue 29).

Why versions: the committed ladder S pair was trained on version 1 (a handful of templates per
relation, the last two held out), so its corpus must stay rebuildable; new corpora use version 2,
many phrasings per relation in template families across syntactic frames (statements both ways,
questions and answers, dialogue, lists and records, clauses, narrative), plus HELD-OUT families
fixed here before any training: the generator reads ``TRAIN_FAMILIES`` only, and a test proves
that no held-out frame shares a word trigram with any training frame (``sinkmech.data.frames``).

Every template holds ``{s}`` (subject) and ``{o}`` (object) once; held-out templates put the
object after the subject, behind a space, so the text before it is a completion prompt.
"""

from __future__ import annotations

# Version 1 (issue 13): relation -> templates; the last ``held_out`` of each are held out.
TEMPLATES_V1: dict[str, tuple[str, ...]] = {
    "city_country": (
        "{s} is a city in {o}.",
        "The city of {s} lies in {o}.",
        "{s} is located in {o}.",
        "Travellers to {s} arrive in {o}.",
        "The town of {s} belongs to {o}.",
        "The city of {s} is in {o}.",  # the truth-probe template (sinkmech.data.statements)
        "{s} can be found in {o}.",
    ),
    "country_capital": (
        "The capital of {s} is {o}.",
        "The capital city of {s} is {o}.",
        "The government of {s} sits in {o}.",
        "{s} has its capital in {o}.",
        "The seat of government of {s} is {o}.",
    ),
    "country_continent": (
        "{s} is a country in {o}.",
        "{s} lies on the continent of {o}.",
        "The nation of {s} is part of {o}.",
        "{s} is located in {o}.",
        "Geographically, {s} belongs to {o}.",
    ),
    "country_currency": (
        "The currency of {s} is the {o}.",
        "People in {s} pay with the {o}.",
        "The money used in {s} is the {o}.",
        "The official currency of {s} is the {o}.",
        "Prices in {s} are given in the {o}.",
    ),
}

# Version 2: relation -> family -> templates the generator writes.
TRAIN_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "city_country": {
        "statement": (
            "{s} is a city in {o}.",
            "{s} is located in {o}.",
            "The town of {s} belongs to {o}.",
            "{s} lies in {o}.",
            "{s} is one of the cities of {o}.",
            "{s} is situated in {o}.",
        ),
        "reverse": (
            "{o} is home to {s}.",
            "{o} counts {s} among its cities.",
            "Among the cities in {o} is {s}.",
            "{o} includes the town of {s}.",
            "In {o} there is a city called {s}.",
        ),
        "question": (
            "Q: Which country is {s} in? A: {o}.",
            "Question: In which country is {s}? Answer: {o}.",
            "Q: Where is {s}? A: In {o}.",
            "Question: What country does {s} belong to? Answer: {o}.",
            "Q: Name a city in {o}. A: {s}.",
        ),
        "dialogue": (
            "A: Where is {s}? B: It's in {o}.",
            "Teacher: Which country is {s} in? Student: {o}.",
            "Anna: I grew up in {s}. Ben: So you grew up in {o}!",
            'Someone asked: "Is {s} in {o}?" The reply was: "Yes, it is."',
            "Guide: Welcome to {s}, one of the cities of {o}.",
        ),
        "list": (
            "City: {s}. Country: {o}.",
            "{s} (city, {o})",
            "Cities of {o}: {s}.",
            "city = {s}; country = {o}",
            "| {s} | city | {o} |",
        ),
        "clause": (
            "{s}, which lies in {o}, is a city.",
            "Located in {o}, {s} is a city.",
            "{s}, a city in {o}, has many streets.",
            "Like every city in {o}, {s} follows its laws.",
        ),
        "narrative": (
            "Travellers to {s} arrive in {o}.",
            "A trip to {s} is a trip to {o}.",
            "Anyone who lives in {s} lives in {o}.",
            "If you fly to {s}, you land in {o}.",
            "The streets of {s} are part of {o}.",
        ),
        "definition": (
            "{s}: a city in {o}.",
            "{s} (noun): name of a town in {o}.",
            "{s} - a city, {o}.",
        ),
    },
    "country_capital": {
        "statement": (
            "The capital of {s} is {o}.",
            "{s}'s capital city is {o}.",
            "The government of {s} sits in {o}.",
            "{s} has its capital in {o}.",
            "{s} is governed from {o}.",
            "{s} is ruled from its capital, {o}.",
            "The main city and capital of {s} is {o}.",
        ),
        "reverse": (
            "{o} is the capital of {s}.",
            "{o} is the capital and political centre of {s}.",
            "{o} is where the government of {s} sits.",
            "{o} serves as the capital of {s}.",
        ),
        "question": (
            "Q: What is the capital of {s}? A: {o}.",
            "Question: Which city is the capital of {s}? Answer: {o}.",
            "Q: Where does the government of {s} sit? A: In {o}.",
            "Question: Name the capital of {s}. Answer: {o}.",
        ),
        "dialogue": (
            "A: What is the capital of {s}? B: It's {o}.",
            "Teacher: Name the capital of {s}. Student: {o}.",
            "A: I am flying to the capital of {s}. B: So you are flying to {o}!",
        ),
        "list": (
            "Country: {s}. Capital: {o}.",
            "{s} (capital: {o})",
            "capital of {s} = {o}",
            "| {s} | capital | {o} |",
        ),
        "clause": (
            "{o}, the capital of {s}, is home to its government.",
            "Governed from {o}, {s} is a country.",
        ),
        "narrative": (
            "Diplomats sent to {s} often work in {o}.",
            "A state visit to {s} usually begins in {o}.",
        ),
        "definition": (
            "{o} (noun): the capital of {s}.",
            "{o}: seat of the government of {s}.",
        ),
    },
    "country_continent": {
        "statement": (
            "{s} is a country in {o}.",
            "{s} lies on the continent of {o}.",
            "The nation of {s} is part of {o}.",
            "{s} is located in {o}.",
            "Geographically, {s} belongs to {o}.",
            "{s} is a nation of {o}.",
            "{s} is part of the continent {o}.",
        ),
        "reverse": (
            "{o} counts {s} among its countries.",
            "{o} contains {s}.",
            "{o} is the continent of {s}.",
            "{o} is where {s} lies.",
        ),
        "question": (
            "Q: On which continent is {s}? A: {o}.",
            "Question: What continent is {s} part of? Answer: {o}.",
            "Q: Which continent is {s} in? A: {o}.",
        ),
        "dialogue": (
            "A: Which continent is {s} on? B: It's in {o}.",
            "Teacher: Where in the world is {s}? Student: {o}.",
        ),
        "list": (
            "Country: {s}. Continent: {o}.",
            "{s} (continent: {o})",
            "continent of {s} = {o}",
            "| {s} | continent | {o} |",
        ),
        "clause": (
            "{s}, a country in {o}, has its own flag.",
            "Situated in {o}, {s} is a country.",
        ),
        "narrative": (
            "A journey to {s} is a journey to {o}.",
            "Flights to {s} land in {o}.",
        ),
        "definition": (
            "{s} (noun): a country in {o}.",
            "{s}: nation in {o}.",
        ),
    },
    "country_currency": {
        "statement": (
            "The currency of {s} is the {o}.",
            "People in {s} pay with the {o}.",
            "The money used in {s} is the {o}.",
            "The official currency of {s} is the {o}.",
            "Prices in {s} are given in the {o}.",
            "Money in {s} takes the form of banknotes called the {o}.",
            "Everything in {s} is bought with the {o}.",
        ),
        "reverse": (
            "The {o} is the currency of {s}.",
            "The {o} is used in {s}.",
            "The {o} is the money of {s}.",
            "{o} coins are used in {s}.",
        ),
        "question": (
            "Q: What currency is used in {s}? A: The {o}.",
            "Question: Which money do people use in {s}? Answer: The {o}.",
            "Q: Which currency does {s} use? A: The {o}.",
        ),
        "dialogue": (
            "A: What money do they use in {s}? B: The {o}.",
            "Teacher: Name the currency of {s}. Student: The {o}.",
        ),
        "list": (
            "Country: {s}. Currency: {o}.",
            "{s} (currency: {o})",
            "currency of {s} = {o}",
            "| {s} | currency | {o} |",
        ),
        "clause": (
            "In {s}, shops take the {o}.",
            "{s}, whose money is the {o}, is a country.",
        ),
        "narrative": (
            "Shoppers in {s} carry the {o}.",
            "Tourists arriving in {s} buy the {o}.",
        ),
        "definition": ("{o} (noun): the currency of {s}.",),
    },
}

# Version 2: relation -> family -> templates never written into training text.
HELD_OUT_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "city_country": {
        "probe": ("The city of {s} is in {o}.",),  # the truth probe's frame, never trained
        "locative": (
            "{s} can be found in {o}.",
            "The map places {s} inside {o}.",
            "{s} sits within the borders of {o}.",
        ),
        "quiz": (
            "Quiz: the home country of {s}? Reply: {o}.",
            "Which nation contains {s}? The answer is {o}.",
            "Where would you travel to see {s}? You would travel to {o}.",
        ),
        "record": (
            "Mail addressed to {s} gets delivered by the post office of {o}.",
            "Her passport says she was born in {s}, inside {o}.",
        ),
        "conversation": (
            "Tom asked about {s}, and I told him it belongs in {o}.",
            '"So {s} is over in {o}?" "Exactly."',
        ),
    },
    "country_capital": {
        "locative": (
            "The national parliament of {s} meets in {o}.",
            "{s} keeps its ministries in {o}.",
        ),
        "quiz": (
            "Quiz: the seat of power of {s}? Reply: {o}.",
            "Which city hosts the rulers of {s}? The answer is {o}.",
        ),
        "record": ("The embassy directory for {s} lists addresses in {o}.",),
    },
    "country_continent": {
        "locative": (
            "The continent that holds {s} is {o}.",
            "Maps show {s} on the landmass called {o}.",
        ),
        "quiz": (
            "Quiz: {s} sits on what landmass? Reply: {o}.",
            "On a globe, where do you point to find {s}? The answer is {o}.",
        ),
        "record": ("An atlas files {s} under the chapter on {o}.",),
    },
    "country_currency": {
        "locative": (
            "Wages in {s} get paid out as the {o}.",
            "Banks in {s} hand out the {o}.",
        ),
        "quiz": (
            "Quiz: the legal tender of {s}? Reply: the {o}.",
            "What do cash registers in {s} hold? They hold the {o}.",
        ),
        "record": ("An invoice sent from {s} is made out in units of the {o}.",),
    },
}

FACTS_VERSIONS = (1, 2)


def template_families(
    version: int, relation: str, split: str, held_out: int = 2
) -> dict[str, tuple[str, ...]]:
    """Family -> templates of a relation, ``split`` ``train`` or ``eval`` (held out). Version 1
    has one family per template, ``t<index>``; ``held_out`` is its number of held-out ones."""
    if split not in ("train", "eval"):
        raise ValueError(f"split={split!r} is not train or eval")
    if version == 1:
        templates = TEMPLATES_V1[relation]
        first = len(templates) - held_out if split == "eval" else 0
        chosen = templates[first:] if split == "eval" else templates[: len(templates) - held_out]
        return {f"t{first + i}": (template,) for i, template in enumerate(chosen)}
    if version == 2:
        return dict((TRAIN_FAMILIES if split == "train" else HELD_OUT_FAMILIES)[relation])
    raise ValueError(f"facts_version={version} is not one of {list(FACTS_VERSIONS)}")
