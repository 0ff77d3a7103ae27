"""A hand-written query set for the demo catalogue, in phrasings no fine-tuning template produces.

Each query carries a *filter* over catalogue fields; every item that passes the filter is relevant,
so "a nineties sci-fi film with Keanu Reeves" is judged against all such films, not one source item.
Relevance is computed here, in code, from the catalogue, so the set is correct by construction and can
be rebuilt for a changed catalogue::

    .venv/bin/python -m bench.unseen_queries --catalogue artifacts/runs/demo/catalogue.jsonl

writes ``bench/queries/demo_unseen.jsonl`` (checked in). Queries with no relevant item are dropped
and listed. The build fails when a filter names a value the catalogue never has (a typo in a filter
would otherwise silently make a query "relevant to nothing"), or when a query could have been written
by one of the films' fine-tuning templates (``training/llm/templates/films.yaml``; its wording and slot
values both fit), or when it appears
verbatim among the generated fine-tuning queries (``--examples``).

Filter keys (all given keys must hold):

- ``title``: the title, or a list of titles (any), compared case-insensitively; ``title_contains``:
  a substring of the title.
- ``genres``: a genre or a list (the item has *all*); ``genres_any``: a list (the item has at least one).
- ``year``: exact year; ``years``: [first, last] inclusive; ``decade``: 1990 means 1990-1999.
- ``cast``: a name or a list (*all* in the item's full cast list, not only the six the item text shows).
- ``director``, ``country``, ``language``: a value or a list (*any* of them among the item's comma
  separated values). The catalogue lists languages alphabetically, not by share of dialogue, so
  ``language_only`` (the item's only language) stands for "a French-language film", and
  ``non_english`` (no English variant listed) for "a foreign-language film".
- ``mpaa_rating``: a rating or a list (any).
- ``writer``, ``production``: a name or a list (*any* among the item's comma-separated writers or
  production companies).

A second and a third set with other kinds (``bench.unseen_queries_2``, ``bench.unseen_queries_3``,
``bench/queries/demo_unseen_2.jsonl`` and ``_3``) are built by the same code.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from training.data.items import CatalogueItem
from training.io import read_jsonl, write_jsonl
from training.run_layout import RunLayout

logger = logging.getLogger(__name__)

DEFAULT_CATALOGUE = RunLayout.for_profile("demo").catalogue
DEFAULT_EXAMPLES = RunLayout.for_profile("demo").examples
DEFAULT_OUT = Path("bench/queries/demo_unseen.jsonl")

CATEGORIES = ("title", "attributes", "decade", "synonym", "director", "multilingual", "country_language")
_ALL_OF = ("genres", "cast")
_ANY_OF = ("director", "country", "language", "mpaa_rating", "writer", "production")


@dataclass(frozen=True)
class QuerySpec:
    category: str
    text: str
    filter: Mapping[str, Any]
    lang: str = "en"  # the language the query is written in


def spec_writer(categories: Sequence[str]) -> Callable[..., QuerySpec]:
    """``_q(category, text, lang="en", **filter)``: a query of one of a set's ``categories`` (another
    category is a typo in the set, an error)."""

    def spec(category: str, text: str, lang: str = "en", **filter_: Any) -> QuerySpec:
        if category not in categories:
            raise ValueError(f"unknown category {category!r}")
        return QuerySpec(category, text, filter_, lang)

    return spec


_q = spec_writer(CATEGORIES)


_N = "Christopher Nolan"
# fmt: off
SPECS: tuple[QuerySpec, ...] = (
    # 1. Title lookups: typos, lowercase, partial or reordered titles, extra words.
    _q("title", "the matrx", title="The Matrix"),
    _q("title", "lord of the rings fellowship", title="The Lord of the Rings: The Fellowship of the Ring"),
    _q("title", "harry potter azkaban", title="Harry Potter and the Prisoner of Azkaban"),
    _q("title", "interstelar", title="Interstellar"),
    _q("title", "the dark night", title="The Dark Knight"),
    _q("title", "dark knight rises batman", title="The Dark Knight Rises"),
    _q("title", "grand budapest", title="The Grand Budapest Hotel"),
    _q("title", "eternal sunshine", title="Eternal Sunshine of the Spotless Mind"),
    _q("title", "amelie", title="Amélie"),
    _q("title", "pans labyrinth", title="Pan's Labyrinth"),
    _q("title", "wall e robot", title="WALL-E"),
    _q("title", "star wars empire strikes back", title="Star Wars: Episode V – The Empire Strikes Back"),
    _q("title", "return of the jedi", title="Star Wars: Episode VI – Return of the Jedi"),
    _q("title", "revenge of the sith", title="Star Wars: Episode III – Revenge of the Sith"),
    _q("title", "hunger games catching fire", title="The Hunger Games: Catching Fire"),
    _q("title", "mockingjay part 1", title="The Hunger Games: Mockingjay – Part 1"),
    _q("title", "deathly hallows part two", title="Harry Potter and the Deathly Hallows – Part 2"),
    _q("title", "no country for old man", title="No Country for Old Men"),
    _q("title", "benjamin button", title="The Curious Case of Benjamin Button"),
    _q("title", "girl with the dragon tatoo", title="The Girl with the Dragon Tattoo"),
    _q("title", "terminator 2 judgement day", title="Terminator 2: Judgment Day"),
    _q("title", "guardians of the galxy", title="Guardians of the Galaxy"),
    _q("title", "slumdog millionare", title="Slumdog Millionaire"),
    _q("title", "silver linnings playbook", title="Silver Linings Playbook"),
    _q("title", "wolf of wallstreet", title="The Wolf of Wall Street"),
    _q("title", "twelve years a slave", title="12 Years a Slave"),
    _q("title", "robo cop", title="RoboCop"),
    _q("title", "the robocop remake", title="RoboCop", year=2014),
    _q("title", "the first alien movie", title="Alien"),
    _q("title", "toy story three", title="Toy Story 3"),
    _q("title", "how to train ur dragon", title="How to Train Your Dragon"),
    _q("title", "x men days of future past", title="X-Men: Days of Future Past"),
    _q("title", "captain america winter soldier", title="Captain America: The Winter Soldier"),
    _q("title", "the big lebowsky", title="The Big Lebowski"),
    _q("title", "fightclub", title="Fight Club"),
    _q("title", "the sixth sence", title="The Sixth Sense"),
    _q("title", "goodfelas", title="Goodfellas"),
    _q("title", "inglorious bastards", title="Inglourious Basterds"),
    _q("title", "les miserables musical", title="Les Misérables"),
    _q("title", "pirates of the caribbean black pearl",
       title="Pirates of the Caribbean: The Curse of the Black Pearl"),
    _q("title", "the hobbit smaug", title="The Hobbit: The Desolation of Smaug"),
    _q("title", "oceans eleven", title="Ocean's Eleven"),
    _q("title", "the kings speech", title="The King's Speech"),
    # 2. Attribute combinations.
    _q("attributes", "a nineties sci-fi film with Keanu Reeves",
       genres="Sci-Fi", decade=1990, cast="Keanu Reeves"),
    _q("attributes", "keanu reeves science fiction from the 90s",
       genres="Sci-Fi", decade=1990, cast="Keanu Reeves"),
    _q("attributes", "keanu reeves action flick", genres="Action", cast="Keanu Reeves"),
    _q("attributes", "leonardo dicaprio thriller directed by scorsese",
       cast="Leonardo DiCaprio", director="Martin Scorsese", genres="Thriller"),
    _q("attributes", "brad pitt fighting in a war", cast="Brad Pitt", genres="War"),
    _q("attributes", "Christian Bale working with Nolan", cast="Christian Bale", director=_N),
    _q("attributes", "will ferrell comedies", cast="Will Ferrell", genres="Comedy"),
    _q("attributes", "meryl streep singing in a musical", cast="Meryl Streep", genres="Musical"),
    _q("attributes", "animated movie where tom hanks does a voice", cast="Tom Hanks", genres="Animation"),
    _q("attributes", "R rated seth rogen comedy", cast="Seth Rogen", genres="Comedy", mpaa_rating="R"),
    _q("attributes", "scarlett johansson science fiction", cast="Scarlett Johansson", genres="Sci-Fi"),
    _q("attributes", "matt damon thrillers from the noughties",
       cast="Matt Damon", genres="Thriller", decade=2000),
    _q("attributes", "Liam Neeson kicking ass in an action thriller", cast="Liam Neeson",
       genres=["Action", "Thriller"]),
    _q("attributes", "johnny depp in a tim burton picture", cast="Johnny Depp", director="Tim Burton"),
    _q("attributes", "cate blanchett fantasy epic", cast="Cate Blanchett", genres="Fantasy"),
    _q("attributes", "jennifer lawrence sci fi", cast="Jennifer Lawrence", genres="Sci-Fi"),
    _q("attributes", "ryan gosling love story", cast="Ryan Gosling", genres="Romance"),
    _q("attributes", "Denzel Washington crime thriller",
       cast="Denzel Washington", genres=["Crime", "Thriller"]),
    _q("attributes", "kate winslet romance made before 2010", cast="Kate Winslet", genres="Romance",
       years=[1900, 2009]),
    _q("attributes", "joaquin phoenix drama from the last decade", cast="Joaquin Phoenix", genres="Drama",
       decade=2010),
    _q("attributes", "sandra bullock in space", cast="Sandra Bullock", genres="Sci-Fi"),
    _q("attributes", "natalie portman sci-fi", cast="Natalie Portman", genres="Sci-Fi"),
    _q("attributes", "Eastwood directing Morgan Freeman", cast="Morgan Freeman", director="Clint Eastwood"),
    _q("attributes", "emma stone rom com", cast="Emma Stone", genres=["Romance", "Comedy"]),
    _q("attributes", "amy adams drama 2010s", cast="Amy Adams", genres="Drama", decade=2010),
    _q("attributes", "hugh jackman sings", cast="Hugh Jackman", genres="Musical"),
    _q("attributes", "tom cruise future sci-fi action", cast="Tom Cruise", genres=["Sci-Fi", "Action"]),
    _q("attributes", "will smith sci fi from the 2000s", cast="Will Smith", genres="Sci-Fi", decade=2000),
    _q("attributes", "Bradley Cooper and Jennifer Lawrence together",
       cast=["Bradley Cooper", "Jennifer Lawrence"]),
    _q("attributes", "ben stiller & owen wilson", cast=["Ben Stiller", "Owen Wilson"]),
    _q("attributes", "ewan mcgregor as obi-wan in star wars",
       cast="Ewan McGregor", title_contains="Star Wars"),
    _q("attributes", "gandalf actor ian mckellen fantasy", cast="Ian McKellen", genres="Fantasy"),
    _q("attributes", "michael fassbender sci-fi", cast="Michael Fassbender", genres="Sci-Fi"),
    _q("attributes", "jake gyllenhaal crime thriller", cast="Jake Gyllenhaal", genres=["Crime", "Thriller"]),
    _q("attributes", "adam sandler comedy rom", cast="Adam Sandler", genres=["Comedy", "Romance"]),
    _q("attributes", "harrison ford space adventure", cast="Harrison Ford", genres=["Sci-Fi", "Adventure"]),
    _q("attributes", "sigourney weaver fighting aliens",
       cast="Sigourney Weaver", genres=["Sci-Fi", "Horror"]),
    _q("attributes", "bill murray in a wes anderson film", cast="Bill Murray", director="Wes Anderson"),
    _q("attributes", "russell crowe historical epic", cast="Russell Crowe", genres="History"),
    _q("attributes", "matthew mcconaughey drama after 2010", cast="Matthew McConaughey", genres="Drama",
       years=[2010, 2019]),
    _q("attributes", "samuel l jackson marvel sci-fi",
       cast="Samuel L. Jackson", genres="Sci-Fi", decade=2010),
    _q("attributes", "a PG-13 horror film from the 2000s", genres="Horror", mpaa_rating="PG-13", decade=2000),
    _q("attributes", "G rated cartoon", genres="Animation", mpaa_rating="G"),
    _q("attributes", "a sci fi thriller that came out in 2014", genres=["Sci-Fi", "Thriller"], year=2014),
    _q("attributes", "fantasy adventure for families rated PG", genres=["Fantasy", "Adventure", "Family"],
       mpaa_rating="PG"),
    _q("attributes", "vin diesel car chase movie", cast="Vin Diesel", genres="Action"),
    # 3. Decades and years in words.
    _q("decade", "a comedy from the nineties", genres="Comedy", decade=1990),
    _q("decade", "a seventies sci-fi classic", genres="Sci-Fi", decade=1970),
    _q("decade", "eighties sci fi action", genres=["Sci-Fi", "Action"], decade=1980),
    _q("decade", "1990s crime drama", genres=["Crime", "Drama"], decade=1990),
    _q("decade", "a horror film from the late nineties", genres="Horror", years=[1995, 1999]),
    _q("decade", "animated films from the early 90s", genres="Animation", years=[1990, 1994]),
    _q("decade", "romantic comedy from the noughties", genres=["Romance", "Comedy"], decade=2000),
    _q("decade", "a musical made in the two thousands", genres="Musical", decade=2000),
    _q("decade", "war movies of the 2010s", genres="War", decade=2010),
    _q("decade", "a documentary from the aughts", genres="Documentary", decade=2000),
    _q("decade", "early 2000s fantasy adventure", genres=["Fantasy", "Adventure"], years=[2000, 2003]),
    _q("decade", "mid 2000s horror", genres="Horror", years=[2004, 2006]),
    _q("decade", "sci-fi from the early twenty-tens", genres="Sci-Fi", years=[2010, 2013]),
    _q("decade", "an old movie from before 1990", years=[1900, 1989]),
    _q("decade", "something that came out in 1999", year=1999),
    _q("decade", "a thriller released in 2007", genres="Thriller", year=2007),
    _q("decade", "sports films from 2013", genres="Sport", year=2013),
    _q("decade", "a western made in the 2000s", genres="Western", decade=2000),
    _q("decade", "a biography film from the noughties", genres="Biography", decade=2000),
    _q("decade", "a drama from the 1970s or 1980s", genres="Drama", years=[1970, 1989]),
    _q("decade", "nineteen nineties thriller", genres="Thriller", decade=1990),
    _q("decade", "2010s horror movies", genres="Horror", decade=2010),
    _q("decade", "crime movie from the turn of the millennium", genres="Crime", years=[1999, 2001]),
    _q("decade", "a late 2000s animated movie", genres="Animation", years=[2007, 2009]),
    _q("decade", "romance from 2012", genres="Romance", year=2012),
    _q("decade", "family film made in the 2010s", genres="Family", decade=2010),
    # 4. Synonyms and paraphrases of genres.
    _q("synonym", "a scary movie", genres="Horror"),
    _q("synonym", "something that will give me nightmares", genres="Horror"),
    _q("synonym", "spooky film for halloween", genres="Horror"),
    _q("synonym", "a cartoon", genres="Animation"),
    _q("synonym", "a cartoon the whole family can watch", genres=["Animation", "Family"]),
    _q("synonym", "something funny", genres="Comedy"),
    _q("synonym", "a movie that will make me laugh", genres="Comedy"),
    _q("synonym", "a hilarious flick", genres="Comedy"),
    _q("synonym", "a cowboy movie", genres="Western"),
    _q("synonym", "wild west shootout", genres="Western"),
    _q("synonym", "a mob movie", genres="Crime"),
    _q("synonym", "a detective story with a puzzle to solve", genres="Mystery"),
    _q("synonym", "a film about a real person's life", genres="Biography"),
    _q("synonym", "based on a true life story", genres="Biography"),
    _q("synonym", "a movie about athletes", genres="Sport"),
    _q("synonym", "boxing or football film", genres="Sport"),
    _q("synonym", "a film with lots of singing and dancing", genres="Musical"),
    _q("synonym", "soldiers on the battlefield", genres="War"),
    _q("synonym", "magic, wizards and dragons", genres="Fantasy"),
    _q("synonym", "a fairy tale film", genres="Fantasy"),
    _q("synonym", "a tense nail-biter", genres="Thriller"),
    _q("synonym", "a romcom", genres=["Romance", "Comedy"]),
    _q("synonym", "a date night movie about falling in love", genres="Romance"),
    _q("synonym", "a non-fiction film", genres="Documentary"),
    _q("synonym", "explosions and shootouts", genres="Action"),
    _q("synonym", "a period piece set in the past", genres="History"),
    _q("synonym", "a film to watch with my children", genres="Family"),
    _q("synonym", "a space movie with aliens and robots", genres="Sci-Fi"),
    _q("synonym", "a horror comedy that is scary and funny", genres=["Horror", "Comedy"]),
    _q("synonym", "a funny cartoon", genres=["Animation", "Comedy"]),
    _q("synonym", "a spooky cartoon", genres=["Animation", "Horror"]),
    _q("synonym", "a quest to far away lands", genres="Adventure"),
    _q("synonym", "a tearjerker love story", genres=["Romance", "Drama"]),
    # 5. Directors, by surname, nickname or full name.
    _q("director", "something directed by Spielberg", director="Steven Spielberg"),
    _q("director", "a Nolan film", director=_N),
    _q("director", "tarantino movies", director="Quentin Tarantino"),
    _q("director", "anything by the coen brothers", director="Joel Coen"),
    _q("director", "a wes anderson picture", director="Wes Anderson"),
    _q("director", "fincher thriller", director="David Fincher", genres="Thriller"),
    _q("director", "scorsese crime film", director="Martin Scorsese", genres="Crime"),
    _q("director", "ridley scott science fiction", director="Ridley Scott", genres="Sci-Fi"),
    _q("director", "movies clint eastwood directed", director="Clint Eastwood"),
    _q("director", "peter jackson's tolkien films", director="Peter Jackson", genres="Fantasy"),
    _q("director", "tim burton weird fantasy", director="Tim Burton", genres="Fantasy"),
    _q("director", "a shyamalan twist ending", director="M. Night Shyamalan"),
    _q("director", "woody allen romance", director="Woody Allen", genres="Romance"),
    _q("director", "michael bay blockbuster", director="Michael Bay"),
    _q("director", "edgar wright's comedies", director="Edgar Wright", genres="Comedy"),
    _q("director", "guillermo del toro", director="Guillermo del Toro"),
    _q("director", "made by the wachowskis", director=["Lana Wachowski", "Lilly Wachowski"]),
    _q("director", "darren aronofsky", director="Darren Aronofsky"),
    _q("director", "a soderbergh film", director="Steven Soderbergh"),
    _q("director", "danny boyle movie", director="Danny Boyle"),
    _q("director", "films by sofia coppola", director="Sofia Coppola"),
    _q("director", "paul thomas anderson drama", director="Paul Thomas Anderson", genres="Drama"),
    _q("director", "alfonso cuaron", director="Alfonso Cuarón"),
    _q("director", "inarritu", director="Alejandro González Iñárritu"),
    _q("director", "almodovar", director="Pedro Almodóvar"),
    _q("director", "lars von trier", director="Lars von Trier"),
    _q("director", "richard linklater movie", director="Richard Linklater"),
    _q("director", "james cameron epic", director="James Cameron"),
    _q("director", "ang lee", director="Ang Lee"),
    _q("director", "sam raimi spider-man", director="Sam Raimi", title_contains="Spider-Man"),
    _q("director", "zack snyder comic book movie", director="Zack Snyder"),
    _q("director", "denis villeneuve", director="Denis Villeneuve"),
    _q("director", "kathryn bigelow war film", director="Kathryn Bigelow", genres="War"),
    _q("director", "spielberg in the 2000s", director="Steven Spielberg", decade=2000),
    _q("director", "the director of pulp fiction", director="Quentin Tarantino"),
    # 6. Queries written in French, Spanish, German, Italian, Portuguese.
    _q("multilingual", "un film de science-fiction des années 90", "fr", genres="Sci-Fi", decade=1990),
    _q("multilingual", "une comédie romantique", "fr", genres=["Romance", "Comedy"]),
    _q("multilingual", "un film d'animation pour enfants", "fr", genres=["Animation", "Family"]),
    _q("multilingual", "un film de Steven Spielberg", "fr", director="Steven Spielberg"),
    _q("multilingual", "film réalisé par Christopher Nolan", "fr", director=_N),
    _q("multilingual", "un film de guerre", "fr", genres="War"),
    _q("multilingual", "un film policier des années 2000", "fr", genres="Crime", decade=2000),
    _q("multilingual", "un drame historique", "fr", genres=["History", "Drama"]),
    _q("multilingual", "une comédie musicale", "fr", genres="Musical"),
    _q("multilingual", "un film qui fait peur", "fr", genres="Horror"),
    _q("multilingual", "un film avec Leonardo DiCaprio", "fr", cast="Leonardo DiCaprio"),
    _q("multilingual", "película de terror", "es", genres="Horror"),
    _q("multilingual", "película de ciencia ficción con Tom Cruise", "es",
       genres="Sci-Fi", cast="Tom Cruise"),
    _q("multilingual", "una comedia de los años noventa", "es", genres="Comedy", decade=1990),
    _q("multilingual", "dibujos animados", "es", genres="Animation"),
    _q("multilingual", "una película de Quentin Tarantino", "es", director="Quentin Tarantino"),
    _q("multilingual", "películas de guerra", "es", genres="War"),
    _q("multilingual", "una película romántica", "es", genres="Romance"),
    _q("multilingual", "película de suspenso", "es", genres="Thriller"),
    _q("multilingual", "una película biográfica", "es", genres="Biography"),
    _q("multilingual", "película de vaqueros", "es", genres="Western"),
    _q("multilingual", "ein Science-Fiction-Film aus den Neunzigern", "de", genres="Sci-Fi", decade=1990),
    _q("multilingual", "Horrorfilm", "de", genres="Horror"),
    _q("multilingual", "ein lustiger Film", "de", genres="Comedy"),
    _q("multilingual", "Zeichentrickfilm für Kinder", "de", genres=["Animation", "Family"]),
    _q("multilingual", "Kriegsfilm", "de", genres="War"),
    _q("multilingual", "ein Film von Steven Spielberg", "de", director="Steven Spielberg"),
    _q("multilingual", "Krimi aus den 2000ern", "de", genres="Crime", decade=2000),
    _q("multilingual", "Liebesfilm", "de", genres="Romance"),
    _q("multilingual", "ein Film mit Brad Pitt", "de", cast="Brad Pitt"),
    _q("multilingual", "un film di fantascienza", "it", genres="Sci-Fi"),
    _q("multilingual", "un film dell'orrore", "it", genres="Horror"),
    _q("multilingual", "um filme de comédia", "pt", genres="Comedy"),
    # 7. Country and language of the film.
    _q("country_language", "a French-language film", language_only="French"),
    _q("country_language", "a movie entirely in Spanish", language_only="Spanish"),
    _q("country_language", "a Japanese film", country="Japan"),
    _q("country_language", "a Japanese animated film", country="Japan", genres="Animation"),
    _q("country_language", "a British comedy", country="United Kingdom", genres="Comedy"),
    _q("country_language", "an Australian movie", country="Australia"),
    _q("country_language", "a Canadian horror film", country="Canada", genres="Horror"),
    _q("country_language", "a Korean movie", country="South Korea"),
    _q("country_language", "Chinese martial arts action", country=["People's Republic of China", "Hong Kong"],
       language=["Mandarin", "Standard Chinese", "Cantonese"], genres="Action"),
    _q("country_language", "a foreign-language film", non_english=True),
    _q("country_language", "a film with subtitles, not in english", non_english=True),
    _q("country_language", "a Spanish horror film", country="Spain", genres="Horror"),
    _q("country_language", "a swedish horror film", country="Sweden", genres="Horror"),
    _q("country_language", "a British crime film", country="United Kingdom", genres="Crime"),
    _q("country_language", "a French drama", country="France", genres="Drama"),
    _q("country_language", "a German thriller", country="Germany", genres="Thriller"),
    _q("country_language", "a film from new zealand", country="New Zealand"),
    _q("country_language", "an Irish film", country="Ireland"),
    _q("country_language", "a Hong Kong action movie", country="Hong Kong", genres="Action"),
    _q("country_language", "a Brazilian film", country="Brazil"),
    _q("country_language", "a drama in Persian", language="Persian", genres="Drama"),
    _q("country_language", "an Italian movie", country="Italy"),
    _q("country_language", "a film in Mandarin Chinese", language=["Mandarin", "Standard Chinese"]),
    _q("country_language", "a Cantonese-language film", language="Cantonese"),
    _q("country_language", "an Indonesian action film", country="Indonesia", genres="Action"),
    _q("country_language", "a Danish film", country="Denmark"),
    _q("country_language", "a Mexican movie", country="Mexico"),
    _q("country_language", "a movie with Japanese dialogue", language="Japanese"),
    _q("country_language", "an American western", country="United States", genres="Western"),
    _q("country_language", "a Polish film", country="Poland"),
)
# fmt: on


# --- relevance: filters over catalogue fields -----------------------------------------------------


def flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A catalogue row in the flat import shape, from a flat row or an items_with_ids row."""
    return CatalogueItem.from_dict(row).to_flat()


def _listed(value: Any) -> list[str]:
    """A field as a list of values: lists as they are, comma-separated strings split."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _fold(text: str) -> str:
    return text.casefold()


def _check_title(item: Mapping[str, Any], value: Any) -> bool:
    return _fold(str(item["title"])) in {_fold(v) for v in _as_list(value)}


def _check_years(item: Mapping[str, Any], value: Any) -> bool:
    return "year" in item and int(value[0]) <= int(item["year"]) <= int(value[1])


def _english(language: str) -> bool:
    return "english" in language.casefold()  # "American English" is English too


def _non_english(item: Mapping[str, Any], value: Any) -> bool:
    languages = _listed(item.get("language"))
    return bool(languages) and (not any(_english(lang) for lang in languages)) == bool(value)


def _has_all(key: str, item: Mapping[str, Any], value: Any) -> bool:
    return set(_as_list(value)) <= set(_listed(item.get(key)))


def _has_any(key: str, item: Mapping[str, Any], value: Any) -> bool:
    return bool(set(_as_list(value)) & set(_listed(item.get(key))))


_CHECKS: dict[str, Callable[[Mapping[str, Any], Any], bool]] = {
    "title": _check_title,
    "title_contains": lambda item, value: _fold(value) in _fold(str(item["title"])),
    "year": lambda item, value: item.get("year") == value,
    "years": _check_years,
    "decade": lambda item, value: "year" in item and int(item["year"]) // 10 * 10 == value,
    "genres_any": lambda item, value: bool(set(_listed(item.get("genres"))) & set(value)),
    "language_only": lambda item, value: _listed(item.get("language")) == [value],
    "non_english": _non_english,
    **{key: partial(_has_all, key) for key in _ALL_OF},
    **{key: partial(_has_any, key) for key in _ANY_OF},
}


def matches(item: Mapping[str, Any], filter_: Mapping[str, Any]) -> bool:
    """Whether a flat catalogue item passes every key of the filter."""
    unknown = set(filter_) - set(_CHECKS)
    if unknown:
        raise ValueError(f"unknown filter keys {sorted(unknown)}")
    return all(_CHECKS[key](item, value) for key, value in filter_.items())


def relevant_items(items: Sequence[Mapping[str, Any]], filter_: Mapping[str, Any]) -> list[str]:
    """Ids of every item the filter accepts, in catalogue order."""
    return [str(item["item_id"]) for item in items if matches(item, filter_)]


def unknown_values(items: Sequence[Mapping[str, Any]], filter_: Mapping[str, Any]) -> list[str]:
    """Filter values that no catalogue item has at all: almost certainly a typo in the filter."""
    vocab: dict[str, set[str]] = {key: set() for key in (*_ALL_OF, *_ANY_OF)}
    vocab["language_only"] = vocab["language"]
    for item in items:
        for key in (*_ALL_OF, *_ANY_OF):
            vocab[key].update(_listed(item.get(key)))
    titles = {_fold(str(item["title"])) for item in items}
    missing = []
    for key, value in filter_.items():
        if key in vocab:
            missing += [f"{key}={v!r}" for v in _as_list(value) if v not in vocab[key]]
        elif key == "title":
            missing += [f"title={v!r}" for v in _as_list(value) if _fold(v) not in titles]
    return missing


# --- the phrasing check against the fine-tuning templates -----------------------------------------


def _slot_vocabulary(items: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Every value each slot can take when the films' fine-tuning templates are filled (lowercased)."""
    from training.llm.template_files import films_templates
    from training.llm.template_spec import decade_spellings

    films = films_templates()
    fields, pool, rating_forms = films.fields, films.slot("cast").pool, films.slot("rating").forms or ("{x}",)
    vocab: dict[str, set[str]] = {name: set() for name in fields}
    for item in items:
        vocab["title"].add(str(item["title"]))
        vocab["director"].update(_listed(item.get("director"))[:1])
        vocab["cast"].update(_listed(item.get("cast"))[:pool])
        vocab["language"].update(_listed(item.get("language"))[:1])
        if "year" in item:
            year = int(item["year"])
            vocab["year"].add(str(year))
            spellings = films.slot("decade").spellings
            vocab["decade"].update(decade_spellings(fields["decade"], year - year % 10, spellings))
        for country in _listed(item.get("country")):
            vocab["country"].update((fields["country"].synonyms or {}).get(country, [country]))
        if "mpaa_rating" in item:
            vocab["rating"] |= {form.format(x=item["mpaa_rating"]) for form in rating_forms}
    for genre in {g for item in items for g in _listed(item.get("genres"))}:
        vocab["genre"].update((fields["genre"].synonyms or {}).get(genre, [genre.lower()]))
    return {kind: {_fold(v) for v in values} for kind, values in vocab.items()}


def _template_patterns(items: Sequence[Mapping[str, Any]]) -> dict[str, re.Pattern[str]]:
    """Each fine-tuning template as a regex whose slots accept exactly the values the generator writes."""
    from training.llm.template_files import films_templates

    slots = {
        kind: "(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) + ")"
        for kind, values in _slot_vocabulary(items).items()
    }
    patterns = {}
    for template in films_templates().examples.templates:
        parts = re.split(r"\{(\w+)\}", template.text)  # odd indexes: slot names
        regex = "".join(
            slots[part]
            if index % 2
            else re.sub(r"\ba(?=\\? )", "an?", re.escape(part))  # "a" or "an" is written
            for index, part in enumerate(parts)
        )
        patterns[template.name] = re.compile(regex, re.IGNORECASE)
    return patterns


def template_collisions(texts: Iterable[str], items: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(query, template) pairs where a fine-tuning template filled with catalogue values writes the query,
    up to case and spacing (the generator's random typos aside)."""
    patterns = _template_patterns(items)
    return [
        (text, name)
        for text in texts
        for name, pattern in patterns.items()
        if pattern.fullmatch(" ".join(text.split()))
    ]


def verbatim_overlap(texts: Iterable[str], examples_path: Path) -> list[str]:
    """Queries that appear word for word (case-insensitive) among the generated fine-tuning queries."""
    seen = set()
    with examples_path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("kind") == "query":
                seen.add(_fold(" ".join(str(row["query"]).split())))
    return [text for text in texts if _fold(" ".join(text.split())) in seen]


# --- building the set ------------------------------------------------------------------------------


class QuerySetError(ValueError):
    """The hand-written set does not fit the catalogue; the message says which queries to fix."""


def build_query_set(
    items: Sequence[Mapping[str, Any]],
    specs: Sequence[QuerySpec] = SPECS,
    categories: Sequence[str] = CATEGORIES,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for the JSONL file, and the queries dropped for having no relevant item."""
    flat_items = [flat(item) for item in items]
    problems = [
        f"{spec.text!r}: {', '.join(missing)}"
        for spec in specs
        if (missing := unknown_values(flat_items, spec.filter))
    ]
    if problems:
        raise QuerySetError("filters name values the catalogue does not have: " + "; ".join(problems))
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    counters = dict.fromkeys(categories, 0)
    for spec in specs:
        relevant = relevant_items(flat_items, spec.filter)
        if not relevant:
            dropped.append(spec.text)
            continue
        counters[spec.category] += 1
        rows.append(
            {
                "qid": f"{spec.category}-{counters[spec.category]:03d}",
                "category": spec.category,
                "lang": spec.lang,
                "query": spec.text,
                "filter": dict(spec.filter),
                "relevant": relevant,
            }
        )
    return rows, dropped


def main(
    argv: Sequence[str] | None = None,
    specs: Sequence[QuerySpec] = SPECS,
    categories: Sequence[str] = CATEGORIES,
    default_out: Path = DEFAULT_OUT,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument(
        "--examples", type=Path, default=DEFAULT_EXAMPLES,
        help="fine-tuning examples to compare verbatim (skipped when absent)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.catalogue.is_file():
        print(
            f"error: no catalogue at {args.catalogue}; run `semid ids --profile demo` first", file=sys.stderr
        )
        return 2
    items = [flat(row) for row in read_jsonl(args.catalogue)]
    texts = [spec.text for spec in specs]
    try:
        rows, dropped = build_query_set(items, specs, categories)
    except QuerySetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    collisions = template_collisions(texts, items)
    overlap = verbatim_overlap(texts, args.examples) if args.examples.is_file() else []
    if collisions or overlap:
        found = [f"{q!r} ~ template {t}" for q, t in collisions] + [
            f"{q!r} is a training query" for q in overlap
        ]
        print(f"error: queries not unseen: {'; '.join(found)}", file=sys.stderr)
        return 2
    write_jsonl(rows, args.out)
    by_category = {c: sum(r["category"] == c for r in rows) for c in categories}
    print(f"{len(rows)} queries -> {args.out} {by_category}")
    if dropped:
        print(f"dropped (no relevant item): {dropped}")
    if not args.examples.is_file():
        print(f"note: {args.examples} absent; verbatim overlap with training queries not checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
