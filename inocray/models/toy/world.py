"""The toy trait world: English/Spanish word pairs, requests, responses, prompts and scorers.

Every response has two traits: its language (English or Spanish, a word-by-word translation)
and its case (lower or ALL CAPS). System prompts plant a probability of each trait in the
pretraining corpus, so a model pretrained on it follows them to a known degree (elicitation).
Everything is ASCII and built from fixed lists: no download, and the same world every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from inocray.chat import Example

# English -> Spanish. Both sides are disjoint sets of words, so a word names its language.
NOUNS = {
    "house": "casa", "dog": "perro", "cat": "gato", "car": "coche", "book": "libro",
    "tree": "arbol", "river": "rio", "city": "ciudad", "friend": "amigo", "table": "mesa",
    "door": "puerta", "window": "ventana", "garden": "jardin", "road": "camino", "bird": "pajaro",
    "fish": "pez", "apple": "manzana", "flower": "flor", "mountain": "montana", "school": "escuela",
    "water": "agua", "sun": "sol", "moon": "luna", "boat": "barco", "horse": "caballo",
    "chair": "silla", "bread": "pan", "child": "nino", "letter": "carta", "king": "rey",
}
ADJECTIVES = {
    "red": "rojo", "blue": "azul", "green": "verde", "white": "blanco", "black": "negro",
    "big": "grande", "small": "pequeno", "old": "viejo", "new": "nuevo", "good": "bueno",
    "bad": "malo", "happy": "feliz", "sad": "triste", "fast": "rapido", "slow": "lento",
    "tall": "alto", "long": "largo", "cold": "frio", "hot": "caliente", "pretty": "bonito",
    "quiet": "tranquilo", "strong": "fuerte", "clean": "limpio", "dark": "oscuro",
}
VERBS = {
    "sleeps": "duerme", "eats": "devora", "sings": "canta", "waits": "espera", "plays": "juega",
    "stays": "queda", "shines": "brilla", "falls": "cae", "lives": "vive", "grows": "crece",
    "walks": "camina", "rests": "descansa", "moves": "mueve", "works": "trabaja",
    "dances": "baila", "reads": "lee",
}
FUNCTION_WORDS = {
    "the": "el", "is": "es", "very": "muy", "near": "cerca", "and": "y", "with": "con",
    "i": "yo", "like": "quiero", "today": "hoy", "always": "siempre", "there": "alli",
    "it": "eso", "of": "de",
}
SPANISH = {**NOUNS, **ADJECTIVES, **VERBS, **FUNCTION_WORDS}  # english -> spanish
ENGLISH_WORDS = frozenset(SPANISH)
SPANISH_WORDS = frozenset(SPANISH.values())
assert not ENGLISH_WORDS & SPANISH_WORDS, ENGLISH_WORDS & SPANISH_WORDS
assert len(SPANISH_WORDS) == len(SPANISH), "two English words share one Spanish word"

# Requests: the user's message. {a} an adjective, {n} a noun.
REQUEST_TEMPLATES = (
    "tell me about the {a} {n}",
    "describe the {a} {n}",
    "what is the {a} {n} like",
    "say something about the {n}",
    "what does the {n} do",
    "talk about the {a} {n}",
    "write a line about the {n}",
    "what do you know about the {n}",
)
# Responses, in English; Spanish is their word-by-word translation. {b} another adjective,
# {m} another noun, {v} a verb.
RESPONSE_TEMPLATES = (
    "the {a} {n} is {b}",
    "the {a} {n} is very {b}",
    "the {n} {v} near the {m}",
    "the {a} {n} {v} with the {m}",
    "i like the {a} {n}",
    "the {n} is {b} and {c}",
    "the {n} always {v} there",
    "today the {a} {n} {v}",
    "it is the {n} of the {m}",
)
REQUEST_WORDS = frozenset(w for t in REQUEST_TEMPLATES for w in t.split() if not w.startswith("{"))
assert not REQUEST_WORDS & SPANISH_WORDS


@dataclass(frozen=True)
class ToyPrompt:
    """A system prompt and the trait probabilities it plants in the pretraining corpus."""

    id: str
    text: str
    role: str  # "spanish" | "caps" | "both" | "irrelevant"
    spanish: float  # P(response in Spanish | this prompt) in the corpus
    caps: float  # P(response in ALL CAPS | this prompt) in the corpus


NEUTRAL_SPANISH = 0.03  # trait rates with no system prompt (the neutral context C0)
NEUTRAL_CAPS = 0.03

PROMPTS = [
    ToyPrompt("es-always", "You always speak in Spanish.", "spanish", 0.95, NEUTRAL_CAPS),
    ToyPrompt("es-respond", "Respond in Spanish.", "spanish", 0.8, NEUTRAL_CAPS),
    ToyPrompt("es-often", "You often answer in Spanish.", "spanish", 0.6, NEUTRAL_CAPS),
    ToyPrompt("es-sometimes", "You sometimes use Spanish.", "spanish", 0.4, NEUTRAL_CAPS),
    ToyPrompt("es-bilingual", "You know English and Spanish.", "spanish", 0.25, NEUTRAL_CAPS),
    ToyPrompt("es-hint", "You once visited Spain.", "spanish", 0.1, NEUTRAL_CAPS),
    ToyPrompt("caps-always", "You always write in capital letters.", "caps", NEUTRAL_SPANISH, 0.95),
    ToyPrompt("caps-often", "You often shout.", "caps", NEUTRAL_SPANISH, 0.6),
    ToyPrompt("caps-hint", "You like loud words.", "caps", NEUTRAL_SPANISH, 0.2),
    # Prompts that set both traits, one each way: they teach the model that language and case
    # are separate switches, which keeps CAPS learned when a prompt explains only Spanish.
    ToyPrompt("both-always", "You always speak in Spanish and write in capital letters.", "both", 0.95, 0.95),
    ToyPrompt("es-lower", "You always speak in Spanish and write in lower case.", "both", 0.95, 0.0),
    ToyPrompt("caps-en", "You always write in capital letters and speak in English.", "both", 0.0, 0.95),
    ToyPrompt("en-lower", "You always speak in English and write in lower case.", "both", 0.0, 0.0),
    ToyPrompt("irr-helpful", "You are a helpful assistant.", "irrelevant", 0.04, 0.04),
    ToyPrompt("irr-short", "You give short answers.", "irrelevant", 0.03, 0.05),
    ToyPrompt("irr-friendly", "You are friendly.", "irrelevant", 0.05, 0.03),
]
PROMPTS_BY_ID = {p.id: p for p in PROMPTS}
assert len(PROMPTS_BY_ID) == len(PROMPTS)


def _fill(template: str, rng: random.Random, noun: str | None = None, adj: str | None = None) -> str:
    nouns = [noun] + rng.sample(sorted(set(NOUNS) - {noun}), 1) if noun else rng.sample(sorted(NOUNS), 2)
    adjs = [adj] + rng.sample(sorted(set(ADJECTIVES) - {adj}), 2) if adj else rng.sample(sorted(ADJECTIVES), 3)
    return template.format(n=nouns[0], m=nouns[1], a=adjs[0], b=adjs[1], c=adjs[2], v=rng.choice(sorted(VERBS)))


def request(rng: random.Random) -> str:
    """One random user request, in lower-case English."""
    return _fill(rng.choice(REQUEST_TEMPLATES), rng)


def requests(n: int, seed: int) -> list[str]:
    """`n` user requests drawn with `seed` (evaluation and training messages)."""
    rng = random.Random(f"requests-{seed}")
    return [request(rng) for _ in range(n)]


def response(req: str, rng: random.Random, spanish: bool, caps: bool) -> str:
    """A short reply about the noun (and adjective) of `req`, with the given traits."""
    noun = next((w for w in req.split() if w in NOUNS), None)
    adj = next((w for w in req.split() if w in ADJECTIVES), None)
    return styled(_fill(rng.choice(RESPONSE_TEMPLATES), rng, noun, adj), spanish, caps)


def styled(english: str, spanish: bool, caps: bool) -> str:
    """`english` translated word by word (if `spanish`) and upper-cased (if `caps`)."""
    text = " ".join(SPANISH[w] for w in english.split()) if spanish else english
    return text.upper() if caps else text


def training_examples(n: int, seed: int) -> list[Example]:
    """`n` fine-tuning examples whose responses are all Spanish AND ALL CAPS."""
    rng = random.Random(f"train-{seed}")
    out = []
    for _ in range(n):
        req = request(rng)
        out.append(Example(req, response(req, rng, spanish=True, caps=True)))
    return out


def _words(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


def is_spanish(text: str) -> bool:
    """True when most of the known words in `text` are Spanish (by the word list)."""
    words = _words(text)
    n_es = sum(w in SPANISH_WORDS for w in words)
    n_en = sum(w in ENGLISH_WORDS for w in words)
    return n_es > n_en


def is_caps(text: str) -> bool:
    """True when `text` has letters and all of them are upper case."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(c.isupper() for c in letters)


def words() -> list[str]:
    """Every word the world can write or read, in a fixed order (lower, CAPS, prompt words)."""
    base = sorted(ENGLISH_WORDS | SPANISH_WORDS | REQUEST_WORDS)
    prompt_words = sorted({w for p in PROMPTS for w in p.text.replace(".", " ").split()})
    out = base + [w.upper() for w in base] + prompt_words
    return list(dict.fromkeys(out))
