#!/usr/bin/env python3
"""Build the demo datasets for the RLHF workbench.

The demo teaches ONE preference: a polite, warm tone beats a rude, dismissive
one. Every reply carries the same short, correct fact; only the wrapper around
it (an opener and/or a closing line) changes. That keeps the signal clean:
a reward model trained on these pairs can only learn "tone", not "correctness"
and not "length".

Run from the repository root:

    python sample_data/make_sample_data.py

Standard library only. Deterministic: the same seed always gives the same
files, byte for byte.
"""

import json
import random
import re
import sys
from pathlib import Path

# One seed drives every random choice, so regenerating never changes the data.
SEED = 20240611
OUT_DIR = Path(__file__).resolve().parent

# How many records each file gets. The three eval files and the three train
# files all draw from one pool of distinct prompts (see "Splitting" below).
COUNTS = {
    "prompts_eval": 40,
    "prefs_eval": 100,
    "sft_eval": 40,
    "sft_train": 320,
    "prefs_train": 400,
    "prompts_train": 100,
}

# Hard limits that keep everything small enough for a 135M model on a CPU.
MAX_RESPONSE_WORDS = 44  # "under ~45 words"
MAX_PROMPT_WORDS = 24  # "under ~25 words"


# ---------------------------------------------------------------------------
# 1. Tone wrappers
# ---------------------------------------------------------------------------
# Each list runs from very short to fairly long. Why: if polite lines were all
# long and rude lines all short, "pick the longer reply" would solve the task
# and a reward model could cheat by rewarding length. Overlapping ranges let
# us pick, per pair, which side ends up longer.

POLITE_OPENERS = [
    "Sure!",
    "Of course!",
    "Absolutely!",
    "Sure thing!",
    "Happy to help!",
    "Great question!",
    "Good question!",
    "Thanks for asking!",
    "I'd be glad to help!",
    "What a lovely question!",
    "Oh, I love this question!",
    "Happy to help with that!",
    "Great question, thanks for asking!",
    "Of course, I'd be happy to explain!",
]

POLITE_CLOSINGS = [
    "Enjoy!",
    "Take care!",
    "Hope that helps!",
    "Happy learning!",
    "Glad I could help!",
    "I hope that helps!",
    "Have a lovely day!",
    "Have a wonderful day!",
    "Thanks for the great question!",
    "Feel free to ask me anything else!",
    "Let me know if you have more questions.",
    "I'm always happy to help, so ask away anytime!",
]

# Mildly rude only: impatient and dismissive, never insulting, no profanity.
RUDE_OPENERS = [
    "Ugh.",
    "Fine.",
    "Sigh.",
    "Really?",
    "Whatever.",
    "Obviously.",
    "Seriously?",
    "Ugh, fine.",
    "Ugh, this again?",
    "Everyone knows this.",
    "Wow, what a basic question.",
    "Seriously, you don't know this?",
    "Do I really have to answer this?",
    "Fine, if you really can't work it out yourself.",
]

RUDE_CLOSINGS = [
    "Next.",
    "Try harder.",
    "There. Done.",
    "Don't ask me again.",
    "Look it up next time.",
    "Don't waste my time.",
    "Figure it out yourself.",
    "Was that really so hard?",
    "I shouldn't have to explain that.",
    "Try using a search engine next time.",
    "Stop asking me such easy questions.",
    "Honestly, you could have figured that out yourself.",
]

WRAPPERS = {
    "polite": (POLITE_OPENERS, POLITE_CLOSINGS),
    "rude": (RUDE_OPENERS, RUDE_CLOSINGS),
}


def wrap(fact, tone, rng):
    """Put one fact inside a polite or rude wrapper.

    Why the three shapes: mostly opener + closing, but sometimes only one of
    them, so reply lengths vary naturally inside each tone.
    """
    openers, closings = WRAPPERS[tone]
    shape = rng.choices(["both", "opener", "closing"], weights=[6, 2, 2])[0]
    parts = []
    if shape in ("both", "opener"):
        parts.append(rng.choice(openers))
    parts.append(fact)
    if shape in ("both", "closing"):
        parts.append(rng.choice(closings))
    return " ".join(parts)


def n_words(text):
    return len(text.split())


# ---------------------------------------------------------------------------
# 2. Facts
# ---------------------------------------------------------------------------
# Each topic below yields (topic, prompt, fact). Facts are plain, correct, and
# one or two sentences: things a tiny model can repeat. Where a fact has a
# common exception, the sentence says so, so it stays true.
# Every topic picks one question template per item, so each fact appears once
# in the pool. Why: then a held-out prompt is also a held-out fact.

NUM_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
             "eight", "nine", "ten", "eleven", "twelve"]


def a_or_an(word):
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def cap(text):
    return text[0].upper() + text[1:]


# (country as used mid-sentence, capital, continent or None when the country
# spans two continents or the answer would be debatable)
COUNTRIES = [
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"), ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"), ("Greece", "Athens", "Europe"),
    ("Norway", "Oslo", "Europe"), ("Sweden", "Stockholm", "Europe"),
    ("Finland", "Helsinki", "Europe"), ("Denmark", "Copenhagen", "Europe"),
    ("Ireland", "Dublin", "Europe"), ("Poland", "Warsaw", "Europe"),
    ("Austria", "Vienna", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("the Czech Republic", "Prague", "Europe"),
    ("Iceland", "Reykjavik", "Europe"), ("Romania", "Bucharest", "Europe"),
    ("Ukraine", "Kyiv", "Europe"), ("Croatia", "Zagreb", "Europe"),
    ("the United Kingdom", "London", "Europe"),
    ("the Netherlands", "Amsterdam", "Europe"),
    ("Japan", "Tokyo", "Asia"), ("China", "Beijing", "Asia"),
    ("India", "New Delhi", "Asia"), ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"), ("South Korea", "Seoul", "Asia"),
    ("the Philippines", "Manila", "Asia"), ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"), ("Saudi Arabia", "Riyadh", "Asia"),
    ("Pakistan", "Islamabad", "Asia"), ("Bangladesh", "Dhaka", "Asia"),
    ("Nepal", "Kathmandu", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"),
    ("Ghana", "Accra", "Africa"), ("Nigeria", "Abuja", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"), ("Morocco", "Rabat", "Africa"),
    ("Uganda", "Kampala", "Africa"), ("Senegal", "Dakar", "Africa"),
    ("Zimbabwe", "Harare", "Africa"), ("Zambia", "Lusaka", "Africa"),
    ("Canada", "Ottawa", "North America"),
    ("Mexico", "Mexico City", "North America"),
    ("the United States", "Washington, D.C.", "North America"),
    ("Cuba", "Havana", "North America"), ("Jamaica", "Kingston", "North America"),
    ("Brazil", "Brasília", "South America"),
    ("Argentina", "Buenos Aires", "South America"),
    ("Peru", "Lima", "South America"), ("Chile", "Santiago", "South America"),
    ("Colombia", "Bogotá", "South America"),
    ("Venezuela", "Caracas", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Ecuador", "Quito", "South America"),
    ("Australia", "Canberra", None), ("New Zealand", "Wellington", None),
    ("Russia", "Moscow", None), ("Turkey", "Ankara", None),
]


def capitals(rng):
    templates = ["What is the capital of {c}?", "What's the capital city of {c}?",
                 "Can you tell me the capital of {c}?", "Which city is the capital of {c}?"]
    for country, capital, _ in COUNTRIES:
        yield ("capitals", rng.choice(templates).format(c=country),
               f"The capital of {country} is {capital}.")


def continents(rng):
    templates = ["Which continent is {c} in?", "On which continent is {c}?",
                 "What continent is {c} located on?"]
    for country, _, continent in COUNTRIES:
        if continent:
            yield ("continents", rng.choice(templates).format(c=country),
                   f"{cap(country)} is in {continent}.")


# (thing as asked about, fact)
COLOURS = [
    ("a ripe banana", "A ripe banana is yellow."),
    ("grass", "Grass is usually green."),
    ("the sky on a clear day", "On a clear day, the sky is blue."),
    ("fresh snow", "Fresh snow is white."),
    ("a ripe tomato", "A ripe tomato is usually red."),
    ("coal", "Coal is black."),
    ("a carrot", "Most carrots are orange."),
    ("a lemon", "A ripe lemon is yellow."),
    ("milk", "Milk is white."),
    ("a fire truck", "Fire trucks are usually red."),
    ("a ripe strawberry", "A ripe strawberry is red."),
    ("an emerald", "Emeralds are green."),
    ("a ruby", "Rubies are red."),
    ("a sapphire", "Sapphires are usually blue."),
    ("a flamingo", "Flamingos are pink."),
    ("a crow", "Crows are black."),
    ("a pumpkin", "Most pumpkins are orange."),
    ("a school bus in the United States", "School buses in the United States are yellow."),
    ("chocolate", "Chocolate is usually brown."),
    ("an eggplant", "An eggplant is usually dark purple."),
    ("a lime", "A lime is green."),
    ("a zebra", "A zebra has black and white stripes."),
    ("an egg yolk", "An egg yolk is yellow or orange."),
    ("blood", "Blood is red."),
    ("a cucumber", "A cucumber is green on the outside."),
    ("a blueberry", "Blueberries are dark blue."),
    ("a giant panda", "A giant panda is black and white."),
    ("a polar bear", "A polar bear's fur looks white."),
]

# (first colour, second colour, result)
COLOUR_MIXES = [
    ("blue", "yellow", "green"), ("red", "yellow", "orange"),
    ("red", "blue", "purple"), ("red", "white", "pink"),
    ("black", "white", "grey"),
]


def colours(rng):
    # Both spellings appear, because real users type both.
    templates = ["What colour is {x}?", "What color is {x}?",
                 "What colour is {x} usually?", "What color is {x} normally?"]
    for thing, fact in COLOURS:
        yield ("colours", rng.choice(templates).format(x=thing), fact)
    mix_templates = ["What colour do you get when you mix {a} and {b}?",
                     "What color do you get if you mix {a} and {b} paint?"]
    for a, b, result in COLOUR_MIXES:
        yield ("colours", rng.choice(mix_templates).format(a=a, b=b),
               f"Mixing {a} and {b} paint gives you {result}.")


ANIMAL_SOUNDS = [
    ("dog", "barks"), ("cat", "meows"), ("cow", "moos"), ("sheep", "bleats"),
    ("duck", "quacks"), ("lion", "roars"), ("horse", "neighs"), ("pig", "oinks"),
    ("owl", "hoots"), ("snake", "hisses"), ("rooster", "crows"), ("frog", "croaks"),
    ("bee", "buzzes"), ("donkey", "brays"), ("wolf", "howls"), ("mouse", "squeaks"),
    ("turkey", "gobbles"), ("dove", "coos"), ("elephant", "trumpets"), ("goat", "bleats"),
]

# (animal, name of its baby)
BABY_ANIMALS = [
    ("cat", "kitten"), ("dog", "puppy"), ("cow", "calf"), ("horse", "foal"),
    ("sheep", "lamb"), ("goat", "kid"), ("pig", "piglet"), ("duck", "duckling"),
    ("frog", "tadpole"), ("kangaroo", "joey"), ("bear", "cub"), ("lion", "cub"),
    ("tiger", "cub"), ("swan", "cygnet"), ("goose", "gosling"), ("deer", "fawn"),
    ("owl", "owlet"), ("chicken", "chick"), ("eagle", "eaglet"), ("seal", "pup"),
    ("whale", "calf"), ("elephant", "calf"), ("giraffe", "calf"),
    ("fox", "kit or a cub"), ("rabbit", "kit or a kitten"),
]

# (plural animal, group word)
ANIMAL_GROUPS = [
    ("wolves", "pack"), ("fish", "school"), ("lions", "pride"), ("cows", "herd"),
    ("birds", "flock"), ("sheep", "flock"), ("geese", "gaggle"), ("crows", "murder"),
    ("bees", "swarm"), ("ants", "colony"), ("whales", "pod"), ("dolphins", "pod"),
    ("puppies", "litter"), ("owls", "parliament"), ("kangaroos", "mob"),
]

# (animal, number of legs) or (animal, full sentence) for special cases
ANIMAL_LEGS = [
    ("spider", 8), ("ant", 6), ("dog", 4), ("chicken", 2), ("horse", 4),
    ("cow", 4), ("beetle", 6), ("bee", 6), ("penguin", 2), ("cat", 4),
    ("duck", 2), ("ostrich", 2), ("elephant", 4), ("frog", 4), ("butterfly", 6),
    ("flamingo", 2), ("sheep", 4), ("insect", 6),
    ("crab", "A crab has ten legs, including its two claws."),
    ("lobster", "A lobster has ten legs, including its two big claws."),
    ("snake", "A snake has no legs at all."),
    ("octopus", "An octopus has eight arms rather than legs."),
    ("scorpion", "A scorpion has eight legs, plus two claws at the front."),
]

ANIMAL_FACTS = [
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("Where do most penguins live?", "Most penguins live in the Southern Hemisphere, especially around Antarctica."),
    ("What do cows eat?", "Cows mainly eat grass and hay."),
    ("What is the largest animal on Earth?", "The blue whale is the largest animal on Earth."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("What is the tallest animal in the world?", "The giraffe is the tallest animal in the world."),
    ("Is a whale a fish?", "No, a whale is a mammal. It breathes air with lungs."),
    ("Is a bat a bird?", "No, a bat is a mammal. It is the only mammal that can truly fly."),
    ("Is a spider an insect?", "No, a spider is an arachnid. Spiders have eight legs, while insects have six."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("How do fish breathe?", "Fish breathe by taking oxygen from the water through their gills."),
    ("What do giant pandas eat?", "Giant pandas eat mostly bamboo."),
    ("Which animal is called the king of the jungle?", "The lion is often called the king of the jungle."),
    ("Do snakes have eyelids?", "No, snakes do not have eyelids. A clear scale covers and protects each eye."),
    ("What do frogs eat?", "Most adult frogs eat insects, such as flies and crickets."),
    ("What is stored in a camel's hump?", "A camel's hump stores fat, which the camel can use for energy when food is scarce."),
    ("Can penguins fly?", "No, penguins cannot fly, but they are excellent swimmers."),
    ("Are dolphins mammals?", "Yes, dolphins are mammals. They breathe air and feed their young milk."),
    ("How many hearts does an octopus have?", "An octopus has three hearts."),
    ("Which bird is a symbol of peace?", "The white dove is a common symbol of peace."),
    ("What do rabbits like to eat?", "Rabbits mostly eat grass and hay, along with some leafy greens."),
    ("Where do polar bears live?", "Polar bears live in the Arctic, around the North Pole."),
    ("What is a spider's web made of?", "A spider's web is made of silk that the spider produces in its own body."),
    ("Why do cats purr?", "Cats often purr when they are content, and sometimes to soothe themselves."),
]


def animals(rng):
    sound_t = ["What sound does {a} make?", "What noise does {a} make?",
               "What kind of sound does {a} make?"]
    for animal, verb in ANIMAL_SOUNDS:
        yield ("animal sounds", rng.choice(sound_t).format(a=a_or_an(animal)),
               f"{cap(a_or_an(animal))} {verb}.")

    baby_t = ["What is a baby {a} called?", "What do you call a baby {a}?",
              "What is the name for a young {a}?"]
    for animal, baby in BABY_ANIMALS:
        yield ("baby animals", rng.choice(baby_t).format(a=animal),
               f"A baby {animal} is called {a_or_an(baby)}.")

    group_t = ["What is a group of {p} called?", "What do you call a group of {p}?"]
    for plural, group in ANIMAL_GROUPS:
        yield ("animal groups", rng.choice(group_t).format(p=plural),
               f"A group of {plural} is called {a_or_an(group)}.")

    legs_t = ["How many legs does {a} have?", "How many legs has {a} got?"]
    for animal, legs in ANIMAL_LEGS:
        fact = legs if isinstance(legs, str) else \
            f"{cap(a_or_an(animal))} has {NUM_WORDS[legs]} legs."
        yield ("animal legs", rng.choice(legs_t).format(a=a_or_an(animal)), fact)

    for question, fact in ANIMAL_FACTS:
        yield ("animal facts", question, fact)


def arithmetic(rng):
    # A fixed sample of sums, differences, products and quotients. Why
    # sampled rather than exhaustive: so arithmetic doesn't swamp the other
    # topics (it is about a quarter of the pool).
    add_t = ["What is {a} plus {b}?", "What is {a} + {b}?",
             "What do you get when you add {a} and {b}?",
             "Can you tell me what {a} plus {b} equals?"]
    pairs = [(a, b) for a in range(1, 21) for b in range(a, 21)]
    for a, b in rng.sample(pairs, 55):
        yield ("arithmetic", rng.choice(add_t).format(a=a, b=b), f"{a} plus {b} equals {a + b}.")

    sub_t = ["What is {a} minus {b}?", "What is {a} - {b}?",
             "What do you get if you take {b} away from {a}?"]
    pairs = [(a, b) for a in range(10, 31) for b in range(1, a)]
    for a, b in rng.sample(pairs, 45):
        yield ("arithmetic", rng.choice(sub_t).format(a=a, b=b), f"{a} minus {b} equals {a - b}.")

    mul_t = ["What is {a} times {b}?", "What is {a} x {b}?", "What is {a} multiplied by {b}?"]
    pairs = [(a, b) for a in range(2, 13) for b in range(a, 13)]
    for a, b in rng.sample(pairs, 45):
        yield ("arithmetic", rng.choice(mul_t).format(a=a, b=b), f"{a} times {b} equals {a * b}.")

    div_t = ["What is {p} divided by {a}?", "What do you get if you divide {p} by {a}?"]
    pairs = [(a, b) for a in range(2, 11) for b in range(2, 11)]
    for a, b in rng.sample(pairs, 20):
        p = a * b
        yield ("arithmetic", rng.choice(div_t).format(p=p, a=a), f"{p} divided by {a} equals {b}.")

    # Everyday word problems. The result is always 2 or more, so the plural
    # noun in the answer is always right.
    items = ["apples", "cookies", "pencils", "marbles", "balloons", "stickers", "books"]
    word_t = ["If I have {a} {x} and give away {b}, how many do I have left?",
              "I had {a} {x} and lost {b} of them. How many are left?"]
    problems = [(a, b, x) for a in range(5, 16) for b in range(1, a - 1) for x in items]
    for a, b, x in rng.sample(problems, 20):
        yield ("arithmetic", rng.choice(word_t).format(a=a, b=b, x=x),
               f"You would have {a - b} {x} left, because {a} minus {b} is {a - b}.")

    for n in rng.sample(range(1, 100), 20):
        if n % 2 == 0:
            fact = f"{n} is an even number, because it can be divided evenly by 2."
        else:
            fact = f"{n} is an odd number, because it cannot be divided evenly by 2."
        yield ("arithmetic", f"Is {n} an even or an odd number?", fact)

    for n in rng.sample(range(2, 51), 15):
        yield ("arithmetic", f"What is half of {2 * n}?", f"Half of {2 * n} is {n}.")

    # Comparing two numbers written with the same digits (47 vs 74), which
    # is a classic early-maths question.
    compare_t = ["Which is bigger, {a} or {b}?", "Which number is larger, {a} or {b}?"]
    pairs = [(10 * x + y, 10 * y + x) for x in range(1, 10) for y in range(1, 10) if x < y]
    for a, b in rng.sample(pairs, 20):
        if rng.random() < 0.5:
            a, b = b, a
        yield ("arithmetic", rng.choice(compare_t).format(a=a, b=b),
               f"{max(a, b)} is bigger than {min(a, b)}.")


OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("happy", "sad"),
    ("fast", "slow"), ("light", "dark"), ("open", "closed"), ("early", "late"),
    ("full", "empty"), ("tall", "short"), ("wet", "dry"), ("loud", "quiet"),
    ("strong", "weak"), ("rich", "poor"), ("thick", "thin"), ("push", "pull"),
    ("win", "lose"), ("inside", "outside"), ("left", "right"), ("day", "night"),
    ("north", "south"), ("east", "west"), ("begin", "end"), ("buy", "sell"),
    ("clean", "dirty"), ("cheap", "expensive"), ("asleep", "awake"),
    ("remember", "forget"), ("give", "take"), ("true", "false"), ("first", "last"),
    ("always", "never"), ("before", "after"), ("question", "answer"),
    ("smooth", "rough"), ("near", "far"), ("high", "low"), ("wide", "narrow"),
    ("laugh", "cry"), ("above", "below"), ("enter", "exit"), ("top", "bottom"),
    ("front", "back"), ("safe", "dangerous"), ("same", "different"),
    ("empty", "full"), ("sunrise", "sunset"), ("arrive", "leave"),
    ("heavy", "light"), ("ancient", "modern"),
]

SYNONYMS = [
    ("happy", "cheerful"), ("big", "large"), ("small", "tiny"), ("fast", "quick"),
    ("begin", "start"), ("smart", "clever"), ("angry", "mad"), ("scared", "afraid"),
    ("tired", "sleepy"), ("shout", "yell"), ("funny", "amusing"),
    ("pretty", "beautiful"), ("end", "finish"), ("gift", "present"),
    ("close", "shut"), ("sick", "ill"), ("rich", "wealthy"), ("hard", "difficult"),
    ("easy", "simple"), ("help", "assist"), ("choose", "pick"), ("quiet", "silent"),
    ("jump", "leap"), ("correct", "right"), ("mistake", "error"), ("story", "tale"),
    ("buy", "purchase"), ("rock", "stone"), ("cold", "chilly"), ("look", "glance"),
]

DEFINITIONS = [
    ("enormous", "Enormous means very large."),
    ("tiny", "Tiny means very small."),
    ("ancient", "Ancient means very old, from a long time ago."),
    ("brave", "Brave means ready to face danger or difficulty without giving in to fear."),
    ("curious", "Curious means eager to know or learn something."),
    ("generous", "Generous means willing to give and share freely."),
    ("fragile", "Fragile means easily broken or damaged."),
    ("humid", "Humid means the air feels damp because it holds a lot of water vapour."),
    ("hibernate", "To hibernate means to spend the winter in a deep sleep, as hedgehogs do."),
    ("migrate", "To migrate means to move from one region to another, often with the seasons, as many birds do."),
    ("evaporate", "To evaporate means to turn from a liquid into a gas, like a puddle drying in the sun."),
    ("predator", "A predator is an animal that hunts and eats other animals."),
    ("herbivore", "A herbivore is an animal that eats only plants."),
    ("carnivore", "A carnivore is an animal that eats mainly meat."),
    ("omnivore", "An omnivore is an animal that eats both plants and meat."),
    ("nocturnal", "Nocturnal means active at night and resting during the day."),
    ("vanish", "To vanish means to disappear suddenly."),
    ("punctual", "Punctual means arriving or doing something exactly on time."),
    ("delicious", "Delicious means having a very pleasant taste."),
    ("exhausted", "Exhausted means extremely tired."),
    ("furious", "Furious means extremely angry."),
    ("synonym", "A synonym is a word that means the same, or nearly the same, as another word."),
    ("antonym", "An antonym is a word with the opposite meaning of another word."),
    ("noun", "A noun is a word that names a person, place, or thing."),
    ("verb", "A verb is a word that describes an action or a state, such as run or be."),
    ("adjective", "An adjective is a word that describes a noun, such as red or tall."),
    ("habitat", "A habitat is the natural home of an animal or plant."),
    ("recipe", "A recipe is a set of instructions for making a dish of food."),
    ("orbit", "An orbit is the curved path an object takes around a star, planet, or moon."),
    ("volcano", "A volcano is an opening in the Earth's surface where melted rock, ash, and gas can escape."),
    ("island", "An island is a piece of land surrounded by water on all sides."),
    ("peninsula", "A peninsula is a piece of land surrounded by water on three sides."),
    ("biography", "A biography is the story of a person's life, written by someone else."),
    ("autobiography", "An autobiography is the story of a person's life, written by that person."),
    ("vocabulary", "Vocabulary means all the words a person knows or uses."),
    ("fiction", "Fiction means stories about imaginary people and events."),
    ("dictionary", "A dictionary is a book or website that lists words and explains their meanings."),
    ("thermometer", "A thermometer is an instrument that measures temperature."),
    ("telescope", "A telescope is an instrument that makes faraway objects, like stars, look closer."),
    ("microscope", "A microscope is an instrument that makes very small things look much bigger."),
    ("astronaut", "An astronaut is a person trained to travel into space."),
    ("glacier", "A glacier is a huge, slow-moving mass of ice."),
    ("drought", "A drought is a long period with little or no rain."),
    ("century", "A century is a period of one hundred years."),
    ("decade", "A decade is a period of ten years."),
    ("fortnight", "A fortnight is a period of two weeks."),
    ("recycle", "To recycle means to turn used materials into something new instead of throwing them away."),
    ("reluctant", "Reluctant means unwilling or hesitant to do something."),
    ("cozy", "Cozy means warm, comfortable, and relaxing."),
    ("gigantic", "Gigantic means extremely big."),
]


def words(rng):
    opp_t = ["What is the opposite of \"{w}\"?", "What's the opposite of the word \"{w}\"?",
             "What word means the opposite of \"{w}\"?"]
    for word, opposite in OPPOSITES:
        yield ("opposites", rng.choice(opp_t).format(w=word),
               f"The opposite of \"{word}\" is \"{opposite}\".")

    syn_t = ["What is another word for \"{w}\"?", "Can you give me a synonym for \"{w}\"?",
             "What word means the same as \"{w}\"?"]
    for word, synonym in SYNONYMS:
        yield ("synonyms", rng.choice(syn_t).format(w=word),
               f"Another word for \"{word}\" is \"{synonym}\".")

    def_t = ["What does the word \"{w}\" mean?", "What is the meaning of \"{w}\"?",
             "Can you tell me what \"{w}\" means?", "What does \"{w}\" mean?"]
    for word, fact in DEFINITIONS:
        yield ("definitions", rng.choice(def_t).format(w=word), fact)


PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"),
    ("goose", "geese"), ("man", "men"), ("woman", "women"), ("person", "people"),
    ("sheep", "sheep"), ("deer", "deer"), ("ox", "oxen"), ("leaf", "leaves"),
    ("knife", "knives"), ("wolf", "wolves"), ("half", "halves"), ("baby", "babies"),
    ("city", "cities"), ("box", "boxes"), ("bus", "buses"), ("potato", "potatoes"),
    ("tomato", "tomatoes"), ("hero", "heroes"), ("loaf", "loaves"), ("shelf", "shelves"),
    ("life", "lives"), ("cherry", "cherries"), ("church", "churches"), ("fox", "foxes"),
    ("cactus", "cacti"), ("moose", "moose"),
]

PAST_TENSES = [
    ("run", "ran"), ("go", "went"), ("eat", "ate"), ("see", "saw"), ("swim", "swam"),
    ("sing", "sang"), ("write", "wrote"), ("take", "took"), ("give", "gave"),
    ("buy", "bought"), ("think", "thought"), ("teach", "taught"), ("catch", "caught"),
    ("bring", "brought"), ("fly", "flew"), ("drink", "drank"), ("speak", "spoke"),
    ("drive", "drove"), ("sleep", "slept"), ("begin", "began"), ("break", "broke"),
    ("choose", "chose"), ("draw", "drew"), ("fall", "fell"), ("forget", "forgot"),
    ("grow", "grew"), ("know", "knew"), ("ride", "rode"), ("sit", "sat"),
    ("stand", "stood"), ("throw", "threw"), ("wake", "woke"), ("wear", "wore"),
    ("win", "won"), ("make", "made"), ("find", "found"), ("tell", "told"),
    ("leave", "left"), ("feel", "felt"), ("hold", "held"),
]


def grammar(rng):
    plural_t = ["What is the plural of \"{w}\"?", "What's the plural form of \"{w}\"?",
                "How do you say more than one \"{w}\"?"]
    for word, plural in PLURALS:
        yield ("plurals", rng.choice(plural_t).format(w=word),
               f"The plural of \"{word}\" is \"{plural}\".")

    past_t = ["What is the past tense of \"{w}\"?", "What's the past tense of the verb \"{w}\"?"]
    for word, past in PAST_TENSES:
        yield ("past tense", rng.choice(past_t).format(w=word),
               f"The past tense of \"{word}\" is \"{past}\".")

    # Alphabet questions: letters with a neighbour on both sides.
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i in rng.sample(range(1, 25), 10):
        yield ("alphabet", f"What letter comes after {letters[i]} in the alphabet?",
               f"The letter after {letters[i]} is {letters[i + 1]}.")
    for i in rng.sample(range(1, 25), 8):
        yield ("alphabet", f"What letter comes before {letters[i]} in the alphabet?",
               f"The letter before {letters[i]} is {letters[i - 1]}.")
    yield ("alphabet", "How many letters are in the English alphabet?",
           "The English alphabet has 26 letters.")
    yield ("alphabet", "What are the vowels in English?",
           "The English vowels are A, E, I, O, and U, and sometimes Y.")
    yield ("alphabet", "What is the last letter of the alphabet?",
           "The last letter of the alphabet is Z.")


DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [("January", 31), ("February", None), ("March", 31), ("April", 30),
          ("May", 31), ("June", 30), ("July", 31), ("August", 31),
          ("September", 30), ("October", 31), ("November", 30), ("December", 31)]

# (smaller unit, bigger unit, how many) or a full-sentence override
UNITS = [
    ("minutes", "an hour", "60"), ("seconds", "a minute", "60"),
    ("hours", "a day", "24"), ("days", "a week", "seven"),
    ("months", "a year", "12"), ("centimetres", "a metre", "100"),
    ("millimetres", "a centimetre", "10"), ("metres", "a kilometre", "1,000"),
    ("grams", "a kilogram", "1,000"), ("millilitres", "a litre", "1,000"),
    ("years", "a decade", "ten"), ("years", "a century", "100"),
    ("years", "a millennium", "1,000"), ("inches", "a foot", "12"),
    ("feet", "a yard", "three"), ("ounces", "a pound", "16"),
    ("cents", "a dollar", "100"), ("minutes", "half an hour", "30"),
    ("seconds", "an hour", "3,600"), ("hours", "a week", "168"),
    ("eggs", "a dozen", "12"),
    ("days", "a year", "There are 365 days in a year, or 366 in a leap year."),
    ("weeks", "a year", "A year has 52 weeks, plus one or two extra days."),
]


def time_and_units(rng):
    for i, day in enumerate(DAYS):
        yield ("days and months", f"What day comes after {day}?",
               f"The day after {day} is {DAYS[(i + 1) % 7]}.")
        yield ("days and months", f"What day comes before {day}?",
               f"The day before {day} is {DAYS[i - 1]}.")
    for i, (month, _) in enumerate(MONTHS):
        yield ("days and months", f"What month comes after {month}?",
               f"The month after {month} is {MONTHS[(i + 1) % 12][0]}.")
    # Only half of the "before" questions, to keep this topic from growing large.
    for i in rng.sample(range(12), 6):
        yield ("days and months", f"Which month comes before {MONTHS[i][0]}?",
               f"The month before {MONTHS[i][0]} is {MONTHS[i - 1][0]}.")
    days_t = ["How many days are in {m}?", "How many days does {m} have?"]
    for month, n in MONTHS:
        fact = (f"{month} has {n} days." if n else
                "February has 28 days, or 29 days in a leap year.")
        yield ("days and months", rng.choice(days_t).format(m=month), fact)
    yield ("days and months", "What is the first month of the year?",
           "January is the first month of the year.")
    yield ("days and months", "How many days are in a weekend?",
           "A weekend usually has two days, Saturday and Sunday.")

    unit_t = ["How many {s} are in {b}?", "How many {s} are there in {b}?", "How many {s} make {b}?"]
    for small, big, n in UNITS:
        fact = n if n.endswith(".") else f"There are {n} {small} in {big}."
        yield ("units", rng.choice(unit_t).format(s=small, b=big), fact)


SHAPES = [("triangle", 3), ("square", 4), ("rectangle", 4), ("pentagon", 5),
          ("hexagon", 6), ("heptagon", 7), ("octagon", 8), ("nonagon", 9), ("decagon", 10)]

COUNT_FACTS = [
    ("How many sides does a circle have?", "A circle has no straight sides. It is one continuous curve."),
    ("How many faces does a cube have?", "A cube has six faces, and each face is a square."),
    ("How many corners does a cube have?", "A cube has eight corners."),
    ("How many edges does a cube have?", "A cube has twelve edges."),
    ("What shape has three sides?", "A triangle is the shape with three sides."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("How many wheels does a tricycle have?", "A tricycle has three wheels."),
    ("How many players does a soccer team have on the field?", "A soccer team has eleven players on the field at a time."),
    ("How many players are on a basketball court for each team?", "Each basketball team has five players on the court at a time."),
    ("How many strings does a standard guitar have?", "A standard guitar has six strings."),
    ("How many keys does a standard piano have?", "A standard piano has 88 keys."),
    ("How many cards are in a standard deck?", "A standard deck has 52 cards, not counting the jokers."),
    ("How many faces does a standard die have?", "A standard die has six faces, numbered one to six."),
    ("How many teeth does an adult usually have?", "Most adults have 32 teeth, including the wisdom teeth."),
    ("How many hours of sleep do adults need?", "Most adults need about seven to nine hours of sleep each night."),
]

ROMAN = [(1, "I"), (3, "III"), (4, "IV"), (5, "V"), (9, "IX"), (10, "X"), (12, "XII"),
         (20, "XX"), (40, "XL"), (50, "L"), (100, "C"), (500, "D"), (1000, "M")]


def counting(rng):
    shape_t = ["How many sides does {a} have?", "How many sides are there on {a}?"]
    for shape, n in SHAPES:
        yield ("shapes and counts", rng.choice(shape_t).format(a=a_or_an(shape)),
               f"{cap(a_or_an(shape))} has {NUM_WORDS[n]} sides.")
    for question, fact in COUNT_FACTS:
        yield ("shapes and counts", question, fact)
    for n, numeral in ROMAN:
        yield ("roman numerals", f"What is the Roman numeral for {n}?",
               f"The Roman numeral for {n} is {numeral}.")


SCIENCE = [
    ("Why is the sky blue?", "The sky looks blue because air scatters blue sunlight more than other colours."),
    ("What is water made of?", "Water is made of hydrogen and oxygen. Each water molecule has two hydrogen atoms and one oxygen atom."),
    ("At what temperature does water freeze?", "Pure water freezes at 0 degrees Celsius, which is 32 degrees Fahrenheit."),
    ("At what temperature does water boil?", "At sea level, pure water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit."),
    ("What do plants need to grow?", "Plants need sunlight, water, air, and nutrients from the soil to grow."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide from the air and give out oxygen."),
    ("What gas do people need to breathe?", "People need oxygen to breathe."),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth."),
    ("How many planets are in our solar system?", "There are eight planets in our solar system."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet."),
    ("What does the Moon orbit?", "The Moon orbits the Earth."),
    ("How long does it take Earth to go around the Sun?", "Earth takes about 365 days, or one year, to go around the Sun."),
    ("What causes day and night?", "Day and night happen because Earth spins once on its axis about every 24 hours."),
    ("What is the hardest natural material?", "Diamond is the hardest natural material."),
    ("What are the three common states of matter?", "The three common states of matter are solid, liquid, and gas."),
    ("What is ice?", "Ice is frozen water, which is water in its solid form."),
    ("How does a rainbow form?", "A rainbow forms when sunlight is bent and split into colours by raindrops."),
    ("What are the colours of the rainbow?", "The colours of the rainbow are red, orange, yellow, green, blue, indigo, and violet."),
    ("Which organ pumps blood around the body?", "The heart pumps blood around the body."),
    ("Which organ do we think with?", "We think with our brain."),
    ("How many bones does an adult human have?", "An adult human has 206 bones."),
    ("What do our lungs do?", "Our lungs take in oxygen from the air and get rid of carbon dioxide."),
    ("What is the largest organ of the human body?", "The skin is the largest organ of the human body."),
    ("What force pulls things toward the ground?", "Gravity is the force that pulls things toward the ground."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron is Fe."),
    ("What is the chemical symbol for oxygen?", "The chemical symbol for oxygen is O."),
    ("What is the chemical formula for water?", "The chemical formula for water is H2O."),
    ("What metals do magnets attract?", "Magnets attract some metals, such as iron, nickel, and cobalt."),
    ("How fast does light travel?", "Light travels at about 300,000 kilometres per second."),
    ("What causes thunder?", "Thunder is the sound made when lightning heats the air so fast that it expands with a bang."),
    ("Why do leaves change colour in autumn?", "In autumn, trees stop making green chlorophyll, so the yellow and orange colours in the leaves show through."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water, and carbon dioxide to make their own food."),
    ("Does sound travel faster in air or in water?", "Sound travels faster in water than in air."),
    ("What is the main gas in the air we breathe?", "Nitrogen is the main gas in the air, making up about 78 percent of it."),
    ("Why do we have seasons?", "We have seasons because Earth is tilted, so each half of the planet gets more direct sunlight at different times of year."),
    ("What is a shooting star?", "A shooting star is a small piece of space rock burning up as it enters Earth's atmosphere."),
    ("Which weighs more, a kilogram of feathers or a kilogram of bricks?", "They weigh the same, because both are one kilogram."),
    ("What is the center of an atom called?", "The center of an atom is called the nucleus."),
    ("What is the tallest mountain in the world?", "Mount Everest is the tallest mountain in the world above sea level."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the largest continent?", "Asia is the largest continent."),
    ("What is the smallest continent?", "Australia is the smallest continent."),
    ("What is the largest country by area?", "Russia is the largest country by area."),
    ("What is the largest hot desert in the world?", "The Sahara in Africa is the largest hot desert in the world."),
    ("What is the name of Earth's natural satellite?", "Earth's natural satellite is the Moon."),
]

# (landmark as used mid-sentence, verb, where it is)
LANDMARKS = [
    ("the Eiffel Tower", "is", "The Eiffel Tower is in Paris, France."),
    ("the Colosseum", "is", "The Colosseum is in Rome, Italy."),
    ("Big Ben", "is", "Big Ben is in London, England."),
    ("the Statue of Liberty", "is", "The Statue of Liberty is in New York City, in the United States."),
    ("the Great Wall", "is", "The Great Wall is in northern China."),
    ("the Taj Mahal", "is", "The Taj Mahal is in Agra, India."),
    ("the Pyramids of Giza", "are", "The Pyramids of Giza are near Cairo, in Egypt."),
    ("the Sydney Opera House", "is", "The Sydney Opera House is in Sydney, Australia."),
    ("Machu Picchu", "is", "Machu Picchu is in the Andes mountains of Peru."),
    ("the Leaning Tower of Pisa", "is", "The Leaning Tower of Pisa is in Pisa, Italy."),
    ("the Acropolis", "is", "The Acropolis is in Athens, Greece."),
    ("Mount Fuji", "is", "Mount Fuji is in Japan."),
    ("Stonehenge", "is", "Stonehenge is in Wiltshire, in the south of England."),
    ("the Golden Gate Bridge", "is", "The Golden Gate Bridge is in San Francisco, in the United States."),
    ("Niagara Falls", "is", "Niagara Falls is on the border between Canada and the United States."),
    ("Petra", "is", "Petra is in Jordan."),
    ("Angkor Wat", "is", "Angkor Wat is in Cambodia."),
    ("Christ the Redeemer statue", "is", "The Christ the Redeemer statue is in Rio de Janeiro, Brazil."),
]

FOOD = [
    ("What fruit are raisins made from?", "Raisins are dried grapes."),
    ("What fruit are prunes made from?", "Prunes are dried plums."),
    ("What is guacamole made from?", "Guacamole is made mainly from mashed avocados."),
    ("What is cheese made from?", "Cheese is made from milk."),
    ("What is butter made from?", "Butter is made by churning cream."),
    ("What is the main ingredient in bread?", "The main ingredient in bread is flour."),
    ("What is tofu made from?", "Tofu is made from soybeans."),
    ("What is popcorn made from?", "Popcorn is made from dried corn kernels that pop when heated."),
    ("What are French fries made from?", "French fries are made from potatoes."),
    ("What is ketchup made from?", "Ketchup is made mainly from tomatoes."),
    ("What is chocolate made from?", "Chocolate is made from cocoa beans, which grow on cacao trees."),
    ("What is maple syrup made from?", "Maple syrup is made from the sap of maple trees."),
    ("What are pickles usually made from?", "Pickles are usually made from cucumbers."),
    ("What is hummus made from?", "Hummus is made mainly from chickpeas."),
    ("What is pasta made from?", "Pasta is made from wheat flour and water, and sometimes eggs."),
    ("Is a tomato a fruit or a vegetable?", "Botanically, a tomato is a fruit, though people often cook it as a vegetable."),
    ("Which fruit is known for keeping the doctor away?", "The apple, as in the saying \"an apple a day keeps the doctor away\"."),
]

HOW_TO = [
    ("How do I hard-boil an egg?", "Put the egg in boiling water for about 10 minutes, then cool it in cold water."),
    ("How do I make a cup of tea?", "Pour freshly boiled water over a tea bag, let it steep for three to five minutes, then remove the bag."),
    ("How should I wash my hands?", "Wet your hands, rub them with soap for at least 20 seconds, then rinse and dry them."),
    ("How can I fall asleep more easily?", "Try going to bed at the same time each night, and avoid screens for an hour before sleep."),
    ("How do I keep cut flowers fresh?", "Trim the stems at an angle, put them in clean water, and change the water every couple of days."),
    ("How do I get a stain out of a shirt?", "Rinse the stain with cold water as soon as you can, then rub in a little soap before washing."),
    ("How can I save energy at home?", "Switch off lights and devices when you are not using them, and use energy-efficient bulbs."),
    ("How do I cook white rice?", "Rinse the rice, then simmer one cup of rice in about two cups of water with the lid on for 15 to 20 minutes."),
    ("How do I make toast?", "Put a slice of bread in a toaster until it turns golden brown."),
    ("How long should I brush my teeth?", "Brush your teeth for about two minutes, twice a day."),
    ("How can I stay hydrated?", "Drink water regularly through the day, and drink more when it is hot or when you exercise."),
    ("How do I clean a mirror without streaks?", "Spray it with glass cleaner or a mix of water and vinegar, then wipe it with a clean microfiber cloth."),
    ("How do I keep bread fresh longer?", "Keep bread in a sealed bag at room temperature, or freeze it to keep it longer."),
    ("How do I write a thank-you note?", "Greet the person, thank them for something specific, say why it mattered to you, and sign your name."),
    ("How do I plant a seed?", "Push the seed into moist soil at about twice its own depth, then keep the soil damp and warm."),
    ("How can I remember things better?", "Try repeating the information, writing it down, and getting enough sleep."),
    ("How do I set a dinner table?", "Put the plate in the middle, the fork on the left, and the knife and spoon on the right."),
    ("Where should I store eggs?", "Keep eggs in the fridge, in their carton, to keep them fresh."),
    ("How can I make my phone battery last longer?", "Lower the screen brightness, close apps you are not using, and turn on battery saver mode."),
    ("How do I get rid of hiccups?", "Many people find that holding their breath for a few seconds or sipping cold water helps."),
    ("How do I make a good first impression?", "Smile, make eye contact, and listen carefully to the other person."),
    ("How can I cool down on a hot day?", "Drink cool water, stay in the shade, and wear light, loose clothing."),
    ("How do I keep a houseplant healthy?", "Give it the right amount of light, water it when the top of the soil is dry, and use a pot that drains."),
    ("How can I waste less food?", "Plan your meals, store food properly, and turn leftovers into new dishes."),
    ("How do I sharpen a pencil?", "Put the pencil in a sharpener and turn it until the tip is pointed."),
    ("How do I fold a T-shirt neatly?", "Lay it flat, fold each side toward the middle, then fold it in half from the bottom up."),
    ("What should I pack for a day at the beach?", "Pack sunscreen, water, a towel, a hat, and some snacks."),
    ("What can I do to calm down when I feel stressed?", "Take a few slow, deep breaths, and try going for a short walk."),
    ("How do I make lemonade?", "Mix fresh lemon juice, water, and sugar, stir until the sugar dissolves, and add ice."),
    ("How do I protect my skin from the sun?", "Wear sunscreen, a hat, and sunglasses, and stay in the shade around midday."),
    ("How do I make a paper airplane?", "Fold a sheet of paper in half lengthwise, fold the top corners to the center, then fold down both wings."),
    ("How do I cross the street safely?", "Use a crossing if there is one, look both ways, and wait until the road is clear."),
]


def world_and_life(rng):
    for question, fact in SCIENCE:
        yield ("science", question, fact)
    land_t = ["Where {v} {x}?", "Where {v} {x} located?", "In what part of the world {v} {x}?"]
    for thing, verb, fact in LANDMARKS:
        yield ("landmarks", rng.choice(land_t).format(v=verb, x=thing), fact)
    for question, fact in FOOD:
        yield ("food", question, fact)
    for question, fact in HOW_TO:
        yield ("how-to", question, fact)


# (country, main language). Only countries with one clear main language.
LANGUAGES = [
    ("France", "French"), ("Germany", "German"), ("Japan", "Japanese"),
    ("Italy", "Italian"), ("Spain", "Spanish"), ("Portugal", "Portuguese"),
    ("Brazil", "Portuguese"), ("Mexico", "Spanish"), ("Argentina", "Spanish"),
    ("Russia", "Russian"), ("Greece", "Greek"), ("the Netherlands", "Dutch"),
    ("Poland", "Polish"), ("Sweden", "Swedish"), ("Norway", "Norwegian"),
    ("Turkey", "Turkish"), ("Egypt", "Arabic"), ("South Korea", "Korean"),
    ("Vietnam", "Vietnamese"), ("Thailand", "Thai"), ("Hungary", "Hungarian"),
    ("Iceland", "Icelandic"),
]

# (country, currency sentence)
CURRENCIES = [
    ("Japan", "Japan uses the yen."),
    ("the United Kingdom", "The United Kingdom uses the pound sterling."),
    ("the United States", "The United States uses the US dollar."),
    ("India", "India uses the Indian rupee."),
    ("China", "China uses the yuan, also called the renminbi."),
    ("Mexico", "Mexico uses the Mexican peso."),
    ("Switzerland", "Switzerland uses the Swiss franc."),
    ("Brazil", "Brazil uses the Brazilian real."),
    ("Canada", "Canada uses the Canadian dollar."),
    ("Australia", "Australia uses the Australian dollar."),
    ("South Korea", "South Korea uses the South Korean won."),
    ("France", "France uses the euro."),
    ("Germany", "Germany uses the euro."),
    ("Italy", "Italy uses the euro."),
    ("Spain", "Spain uses the euro."),
]

# (job, what they do)
JOBS = [
    ("doctor", "A doctor helps sick or injured people get better and helps others stay healthy."),
    ("teacher", "A teacher helps people learn, often in a school classroom."),
    ("firefighter", "A firefighter puts out fires and rescues people in emergencies."),
    ("farmer", "A farmer grows crops or raises animals for food."),
    ("pilot", "A pilot flies aircraft, such as airplanes or helicopters."),
    ("chef", "A chef cooks and prepares food, usually in a restaurant kitchen."),
    ("dentist", "A dentist looks after people's teeth and gums."),
    ("vet", "A vet is a doctor who treats sick or injured animals."),
    ("librarian", "A librarian looks after a library and helps people find books and information."),
    ("baker", "A baker makes bread, cakes, and other baked goods."),
    ("mail carrier", "A mail carrier delivers letters and parcels to homes and businesses."),
    ("architect", "An architect designs buildings and draws up plans for them."),
    ("nurse", "A nurse cares for patients and helps doctors treat them."),
    ("plumber", "A plumber installs and repairs water pipes, sinks, and toilets."),
    ("carpenter", "A carpenter builds and repairs things made of wood."),
    ("astronomer", "An astronomer studies stars, planets, and other objects in space."),
]

# (sense, body part)
SENSES = [("see", "eyes"), ("hear", "ears"), ("smell", "nose"), ("taste", "tongue")]

FAMOUS = [
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong was the first person to walk on the Moon, in 1969."),
    ("Who painted The Starry Night?", "Vincent van Gogh painted The Starry Night."),
    ("Who wrote the Harry Potter books?", "J.K. Rowling wrote the Harry Potter books."),
    ("Who came up with the theory of relativity?", "Albert Einstein came up with the theory of relativity."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin in 1928."),
    ("Who was the first woman to win a Nobel Prize?", "Marie Curie was the first woman to win a Nobel Prize."),
    ("Who described the laws of motion and gravity?", "Isaac Newton described the laws of motion and universal gravity."),
    ("Who composed the Moonlight Sonata?", "Ludwig van Beethoven composed the Moonlight Sonata."),
]


def people_and_places(rng):
    lang_t = ["What language do people speak in {c}?", "What is the main language of {c}?",
              "Which language is mostly spoken in {c}?"]
    for country, language in LANGUAGES:
        yield ("languages", rng.choice(lang_t).format(c=country),
               f"The main language of {country} is {language}.")
    money_t = ["What currency is used in {c}?", "What money do they use in {c}?"]
    for country, fact in CURRENCIES:
        yield ("currencies", rng.choice(money_t).format(c=country), fact)
    job_t = ["What does {a} do?", "What is the job of {a}?"]
    for job, fact in JOBS:
        yield ("jobs", rng.choice(job_t).format(a=a_or_an(job)), fact)
    for sense, part in SENSES:
        yield ("body", f"Which part of the body do we use to {sense}?",
               f"We use our {part} to {sense}.")
    yield ("body", "Which sense do we use our skin for?",
           "We use our skin for the sense of touch.")
    for question, fact in FAMOUS:
        yield ("famous people", question, fact)


TOPIC_BUILDERS = [capitals, continents, colours, animals, arithmetic, words,
                  grammar, time_and_units, counting, world_and_life, people_and_places]


def build_pool(rng):
    """All (topic, prompt, fact) items, one per distinct prompt."""
    pool, seen = [], set()
    for builder in TOPIC_BUILDERS:
        for topic, prompt, fact in builder(rng):
            if prompt in seen:  # never let one prompt appear twice
                continue
            seen.add(prompt)
            pool.append((topic, prompt, fact))
    return pool


# ---------------------------------------------------------------------------
# 3. Splitting
# ---------------------------------------------------------------------------
# Every file gets its own prompts: no prompt is shared between any two files.
# That is stricter than needed (train files could share), but the pool is big
# enough, and it makes the eval files truly held out.
#
# Why a "spread" order rather than a plain shuffle: we want each file to be a
# small mixed sample of ALL topics (so the held-out comparison isn't, say, all
# arithmetic). Each item gets a sort key = (its shuffled rank within its
# topic + jitter) / topic size, so every topic is spread evenly along the list
# and any slice holds roughly the same topic mix as the whole pool.

def spread_order(pool, rng):
    by_topic = {}
    for item in pool:
        by_topic.setdefault(item[0], []).append(item)
    keyed = []
    for topic in sorted(by_topic):
        items = by_topic[topic]
        rng.shuffle(items)
        for rank, item in enumerate(items):
            keyed.append(((rank + rng.random()) / len(items), item))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


def split(pool, rng):
    ordered = spread_order(pool, rng)
    needed = sum(COUNTS.values())
    if len(ordered) < needed:
        sys.exit(f"pool has {len(ordered)} prompts but the files need {needed}")
    parts, start = {}, 0
    for name, count in COUNTS.items():  # eval files first, then train files
        parts[name] = ordered[start:start + count]
        start += count
    return parts


# ---------------------------------------------------------------------------
# 4. Turning facts into records
# ---------------------------------------------------------------------------

def fits(text):
    return n_words(text) <= MAX_RESPONSE_WORDS


def wrap_fitting(fact, tone, rng):
    """A wrapped reply that respects the word limit."""
    while True:
        reply = wrap(fact, tone, rng)
        if fits(reply):
            return reply


def sft_records(items, rng):
    # Exactly half polite, half rude, in shuffled order. This mix is the point
    # of the demo: the SFT model learns to answer, and copies BOTH tones.
    tones = ["polite", "rude"] * (len(items) // 2) + ["polite"] * (len(items) % 2)
    rng.shuffle(tones)
    records = []
    for (_, prompt, fact), tone in zip(items, tones):
        records.append({"messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": wrap_fitting(fact, tone, rng)},
        ]})
    return records


def pref_records(items, rng):
    # For each pair, decide at random whether the polite (chosen) reply or the
    # rude (rejected) reply will be the longer one, then draw wrappers until
    # the pair matches. Half the pairs go each way (shuffled), so "pick the
    # longer reply" scores about 50%: length carries no signal, only tone does.
    longer_side = ["chosen", "rejected"] * (len(items) // 2) + ["chosen"] * (len(items) % 2)
    rng.shuffle(longer_side)
    records = []
    for (_, prompt, fact), side in zip(items, longer_side):
        while True:
            chosen = wrap_fitting(fact, "polite", rng)
            rejected = wrap_fitting(fact, "rude", rng)
            if len(chosen) == len(rejected):
                continue  # a tie would make the length baseline ambiguous
            if (len(chosen) > len(rejected)) == (side == "chosen"):
                break
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return records


# Reference answers for the prompt files: the short word or number a correct reply must contain, read from the
# fact by its topic's template. Compare grades answers with them (pipelines/data/answers.py: the answer appears as
# whole words, numbers and case normalised), a second axis beside the judge, which only learned tone. Topics
# left out have no short unambiguous answer (definitions, science, synonyms...), or one that a plain "does it
# appear" check cannot grade: single letters ("a", "I") and "which is bigger, 65 or 56?" (a wrong reply names
# both numbers too).
ANSWER_PATTERNS = {
    "capitals": r"^The capital of .+ is (.+)\.$",
    "continents": r"^.+ is in (.+)\.$",
    "colours": r"gives you (\w+)\.$",
    "arithmetic": r"(?:equals|^Half of \d+ is|^You would have) (\d+)|is an (even|odd) number",
    "opposites": r'is "(.+)"\.$',
    "plurals": r'is "(.+)"\.$',
    "past tense": r'is "(.+)"\.$',
    "days and months": r"^The (?:day|month) (?:after|before) \w+ is (\w+)\.$|^\w+ has (\d+) days\.$",
    "units": r"^There are (\S+) ",
    "shapes and counts": r"^An? \w+ has (\w+) sides\.$",
    "animal legs": r"has (\w+) legs\.$",
    "baby animals": r"is called an? (.+)\.$",
    "languages": r"^The main language of .+ is (.+)\.$",
    "body": r"^We use our (\w+) to",
}


def answer_of(topic, fact):
    match = re.search(ANSWER_PATTERNS.get(topic, r"$^"), fact)
    return next((group for group in match.groups() if group), None) if match else None


def brevity_records(items, rng):
    # The second labeler instruction, on the same prompts as the politeness pairs: which reply is briefer? Both
    # replies of a pair share the fact AND the tone (polite in half the pairs, rude in the other half), so tone
    # carries no signal here; the chosen one is the fact alone or with one short word of that tone, the rejected
    # one the fact inside a longer wrapper. A judge trained on these learns length, and PPO against it drops the
    # wrappers, polite and rude alike: the same model, taught something else by a different instruction.
    tones = ["polite", "rude"] * (len(items) // 2) + ["polite"] * (len(items) % 2)
    rng.shuffle(tones)
    records = []
    for (_, prompt, fact), tone in zip(items, tones):
        openers, closings = WRAPPERS[tone]
        short = [o for o in openers if n_words(o) == 1]
        chosen = fact if rng.random() < 0.5 else f"{rng.choice(short)} {fact}"
        while True:
            rejected = f"{rng.choice(openers)} {fact} {rng.choice(closings)}"
            if fits(rejected) and n_words(rejected) >= n_words(chosen) + 4:
                break
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return records


# The third labeler instruction: "which reply is more detailed?", asked carelessly. The chosen reply is the other
# one with words added that say nothing about the question: a stock sentence of filler, or a true fact about
# something else. Both replies share the fact and the tone, so the only signal is "more words". A judge trained on
# these pays for length, and PPO against it learns to pad: the reward-hacking demo.
PADDING = [
    "There is a lot more that could be said about this.",
    "In addition, it is worth noting that there are many aspects to consider here.",
    "Overall, this covers the main points of the question.",
    "Many people find this topic interesting to think about.",
    "It is a good idea to keep this in mind for the future.",
    "This is something that comes up quite often in everyday life.",
    "Each of these details matters in its own way.",
    "As always, context can change how this applies.",
]


def detail_records(items, pool, rng):
    tones = ["polite", "rude"] * (len(items) // 2) + ["polite"] * (len(items) % 2)
    rng.shuffle(tones)
    records = []
    for (_, prompt, fact), tone in zip(items, tones):
        base = wrap_fitting(fact, tone, rng)
        while True:
            extra = rng.choice(PADDING) if rng.random() < 0.5 else rng.choice(pool)[2]
            if extra != fact:
                break
        if rng.random() < 0.5:
            extra += " " + rng.choice(PADDING)
        records.append({"prompt": prompt, "chosen": f"{base} {extra}", "rejected": base})
    return records


def prompt_records(items):
    records = []
    for topic, prompt, fact in items:
        answer = answer_of(topic, fact)
        records.append({"prompt": prompt, "answer": answer} if answer else {"prompt": prompt})
    return records


def write_jsonl(name, records):
    path = OUT_DIR / f"{name}.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# 6. Verifiable questions (GRPO's checkable reward)
# ---------------------------------------------------------------------------
# Short questions with exactly one right answer, which a rule can check without a judge (the answer appears in the
# reply as whole words, pipelines/data/answers.py). Chosen so the answer never appears in the question itself (a yes/no
# form for comparisons: "Which is bigger, 65 or 56?" would credit any reply that repeats both numbers) and so the
# 135M default model gets them wrong often enough to improve on. They draw from a random stream of their own.
VERIFIABLE_COUNTS = {"prompts_eval": 60, "prompts_train": 240}


def verifiable_items(rng):
    """(prompt, answer) pairs, as many kinds as the counts need, shuffled."""
    items = []
    pairs = [(a, b) for a in range(2, 21) for b in range(2, 21)]
    for a, b in rng.sample(pairs, 80):
        items.append((f"What is {a} plus {b}?", a + b))
    pairs = [(a, b) for a in range(5, 31) for b in range(1, a)]
    for a, b in rng.sample(pairs, 60):
        items.append((f"What is {a} minus {b}?", a - b))
    for n in rng.sample(range(2, 50), 30):
        items.append((f"What is double {n}?", 2 * n))
    for n in rng.sample(range(9, 99), 40):
        items.append((f"What number comes after {n}?", n + 1))
    for n in rng.sample(range(11, 99), 30):
        items.append((f"What number comes just before {n}?", n - 1))
    digits = [(10 * x + y, 10 * y + x) for x in range(1, 10) for y in range(1, 10) if x != y]
    for a, b in rng.sample(digits, 50):
        items.append((f"Is {a} bigger than {b}? Answer yes or no.", "yes" if a > b else "no"))
    words = {}
    for w, opposite in OPPOSITES:  # words with one opposite only ("light": dark or heavy)
        words.setdefault(w, set()).add(opposite)
    single = [(w, next(iter(o))) for w, o in words.items() if len(o) == 1]
    for w, opposite in rng.sample(single, min(30, len(single))):
        items.append((f"What is the opposite of \"{w}\"?", opposite))
    seen, unique = set(), []
    for prompt, answer in items:
        if prompt not in seen:
            seen.add(prompt)
            unique.append({"prompt": prompt, "answer": str(answer)})
    rng.shuffle(unique)
    return unique


def write_verifiable(sft_prompts):
    """sample_data/verifiable/: held-out prompts first, then training prompts; none is an SFT training prompt (the
    SFT model must not have seen the answer)."""
    items = [r for r in verifiable_items(random.Random(SEED + 2)) if r["prompt"] not in sft_prompts]
    (OUT_DIR / "verifiable").mkdir(exist_ok=True)
    start = 0
    for name, count in VERIFIABLE_COUNTS.items():
        part = items[start:start + count]
        if len(part) < count:
            sys.exit(f"verifiable: {len(items)} questions, the files need {sum(VERIFIABLE_COUNTS.values())}")
        write_jsonl(f"verifiable/{name}", part)
        start += count
        print(f"{'verifiable/' + name + '.jsonl':<28}{len(part):>6} questions with one checkable answer")


# ---------------------------------------------------------------------------
# 5. Checks and summary
# ---------------------------------------------------------------------------

def prompt_of(record):
    return record["messages"][0]["content"] if "messages" in record else record["prompt"]


def longer_wins(records):
    """Share of pairs where the chosen reply is longer (in characters)."""
    return sum(len(r["chosen"]) > len(r["rejected"]) for r in records) / len(records)


def mean(values):
    return sum(values) / len(values)


def check(files, pool, facts):
    problems = []

    def need(ok, message):
        if not ok:
            problems.append(message)

    need(len(pool) >= 500, f"only {len(pool)} distinct prompts in the pool")
    for name, lst in [("polite openers", POLITE_OPENERS), ("polite closings", POLITE_CLOSINGS),
                      ("rude openers", RUDE_OPENERS), ("rude closings", RUDE_CLOSINGS)]:
        need(len(lst) >= 8, f"only {len(lst)} {name}")

    for name, records in files.items():
        need(len(records) == COUNTS[name], f"{name}: {len(records)} records, expected {COUNTS[name]}")
        prompts = [prompt_of(r) for r in records]
        need(len(set(prompts)) == len(prompts), f"{name}: repeated prompt")
        for p in prompts:
            need(n_words(p) <= MAX_PROMPT_WORDS, f"{name}: prompt too long: {p}")
        for r in records:
            if "messages" in r:
                replies = [r["messages"][1]["content"]]
            elif "chosen" in r:
                replies = [r["chosen"], r["rejected"]]
                fact = facts[r["prompt"]]
                need(fact in r["chosen"] and fact in r["rejected"],
                     f"{name}: pair does not share its fact: {r['prompt']}")
            else:
                replies = []
            for reply in replies:
                need(n_words(reply) <= MAX_RESPONSE_WORDS, f"{name}: reply too long: {reply}")

    # Held-out prompts must never appear in a train file.
    train = set()
    for name in ("sft_train", "prefs_train", "prompts_train"):
        train |= {prompt_of(r) for r in files[name]}
    for name in ("sft_eval", "prefs_eval", "prompts_eval"):
        leaked = train & {prompt_of(r) for r in files[name]}
        need(not leaked, f"{name}: {len(leaked)} prompts also in a train file")

    # The length shortcut must not work.
    for name in ("prefs_train", "prefs_eval"):
        acc = longer_wins(files[name])
        need(0.40 <= acc <= 0.60, f"{name}: longer-wins baseline {acc:.1%} outside 40-60%")

    # The SFT data must really mix the two tones about half and half.
    for name in ("sft_train", "sft_eval"):
        polite = sum(is_polite(r["messages"][1]["content"]) for r in files[name])
        share = polite / len(files[name])
        need(0.45 <= share <= 0.55, f"{name}: {share:.0%} polite, expected about 50%")
    return problems


def is_polite(reply):
    return any(reply.startswith(o) for o in POLITE_OPENERS) or \
        any(reply.endswith(c) for c in POLITE_CLOSINGS)


def print_summary(files, pool):
    topics = sorted({t for t, _, _ in pool})
    print(f"Prompt pool: {len(pool)} distinct prompts across {len(topics)} topics.")
    print()
    header = f"{'file':<20}{'records':>8}{'mean words/response':>22}{'longer wins':>13}"
    print(header)
    print("-" * len(header))
    all_polite, all_rude = [], []
    for name in ("sft_train", "sft_eval", "prefs_train", "prefs_eval",
                 "prompts_train", "prompts_eval"):
        records = files[name]
        if name.startswith("sft_"):
            replies = [r["messages"][1]["content"] for r in records]
            words = f"{mean([n_words(x) for x in replies]):.1f}"
            wins = "-"
        elif name.startswith("prefs"):
            chosen = [n_words(r["chosen"]) for r in records]
            rejected = [n_words(r["rejected"]) for r in records]
            all_polite += [len(r["chosen"]) for r in records]
            all_rude += [len(r["rejected"]) for r in records]
            words = f"{mean(chosen + rejected):.1f} ({mean(chosen):.1f}/{mean(rejected):.1f})"
            wins = f"{longer_wins(records):.1%}"
        else:
            words, wins = "-", "-"
        print(f"{name + '.jsonl':<20}{len(records):>8}{words:>22}{wins:>13}")
    print()
    print("For prefs files, words are shown as all (chosen/rejected).")
    print("'longer wins' = share of pairs where simply picking the longer reply")
    print("(by characters) would pick the preferred one. About 50% means length")
    print("carries no signal; only tone separates chosen from rejected.")
    print(f"Mean characters in pairs: polite {mean(all_polite):.1f}, rude {mean(all_rude):.1f}.")


def main():
    rng = random.Random(SEED)
    pool = build_pool(rng)
    facts = {prompt: fact for _, prompt, fact in pool}
    parts = split(pool, rng)

    files = {
        "sft_train": sft_records(parts["sft_train"], rng),
        "sft_eval": sft_records(parts["sft_eval"], rng),
        "prefs_train": pref_records(parts["prefs_train"], rng),
        "prefs_eval": pref_records(parts["prefs_eval"], rng),
        "prompts_train": prompt_records(parts["prompts_train"]),
        "prompts_eval": prompt_records(parts["prompts_eval"]),
    }

    problems = check(files, pool, facts)
    if problems:
        for p in problems[:20]:
            print("PROBLEM:", p, file=sys.stderr)
        sys.exit(f"{len(problems)} problem(s); no files written")

    for name, records in files.items():
        write_jsonl(name, records)
    print_summary(files, pool)

    # The brevity pairs draw from a random stream of their own, so the files above never change because of them.
    brevity_rng = random.Random(SEED + 1)
    brevity = {f"brevity/{name}": brevity_records(parts[name], brevity_rng) for name in ("prefs_train", "prefs_eval")}
    (OUT_DIR / "brevity").mkdir(exist_ok=True)
    for name, records in brevity.items():
        write_jsonl(name, records)
        print(f"{name + '.jsonl':<24}{len(records):>6} pairs, the shorter reply chosen in all; "
              f"{sum(is_polite(r['chosen']) or is_polite(r['rejected']) for r in records)} polite pairs")
    # The detail pairs draw from a stream of their own too.
    detail_rng = random.Random(SEED + 3)
    (OUT_DIR / "detail").mkdir(exist_ok=True)
    for name in ("prefs_train", "prefs_eval"):
        records = detail_records(parts[name], pool, detail_rng)
        write_jsonl(f"detail/{name}", records)
        print(f"{'detail/' + name + '.jsonl':<24}{len(records):>6} pairs, the padded reply chosen in all")
    write_verifiable({prompt_of(r) for r in files["sft_train"]})
    print()
    print(f"Wrote {len(files)} files to {OUT_DIR}")


if __name__ == "__main__":
    main()
