"""A third hand-written query set for the demo catalogue, written on 2026-12-06 to measure, never to tune.

It was written before any system was measured on it, after the fusion rule, the field weights and the
decisive tier were chosen on training-side queries, and nothing is ever tuned on it: it only measures.
Its phrasings are deliberately unlike those of the first two sets (``bench.unseen_queries``,
``bench.unseen_queries_2``): lower case, missing punctuation, typos in names and titles, words in
another order. Relevance comes from each query's filter, as in ``bench.unseen_queries`` (same filter
keys, same checks: a filter value the catalogue lacks, a query a fine-tuning template could write, or
one that is a training query verbatim stops the build)::

    .venv/bin/python -m bench.unseen_queries_3 --catalogue artifacts/runs/demo/catalogue.jsonl

writes ``bench/queries/demo_unseen_3.jsonl`` (checked in). The kinds:

- ``actor_decade_genre``: an actor, at any billing position, with a decade and a genre;
- ``synonym_actor_decade_words``: a genre in other words ("a cop film", "a tearjerker"), an actor and
  a decade in words ("the nineties", "the two-thousands");
- ``spanish_genre_actor``: written in Spanish, a genre in Spanish with an actor, sometimes a decade;
- ``french_genre_decade``: written in French, a genre and a decade in French forms ("années 80");
- ``german_mixed``: written in German, a genre with a decade ("Nullerjahre", "achtziger Jahre"), an
  actor or a director;
- ``surname_only``: an actor's or a director's surname alone or with one generic word, some misspelt;
- ``typo_title``: film titles with typos, missing words or articles, numbers written otherwise;
- ``combo``: attribute combinations: director and decade, rating with genre and decade or year,
  country and genre, language and year;
- ``writer_or_studio``: a screenwriter or a production company with a genre, a decade or a year.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.unseen_queries import QuerySpec, main, spec_writer

CATEGORIES = (
    "actor_decade_genre", "synonym_actor_decade_words", "spanish_genre_actor", "french_genre_decade",
    "german_mixed", "surname_only", "typo_title", "combo", "writer_or_studio",
)  # fmt: skip
DEFAULT_OUT = Path("bench/queries/demo_unseen_3.jsonl")


_q = spec_writer(CATEGORIES)


_COENS = ["Joel Coen", "Ethan Coen", "Coen brothers"]
_HALLOWS = ["Harry Potter and the Deathly Hallows – Part 1", "Harry Potter and the Deathly Hallows – Part 2"]
# fmt: off
SPECS: tuple[QuerySpec, ...] = (
    # 1. An actor (any billing position) with a decade and a genre.
    _q("actor_decade_genre", "keanu reeves 90s action", cast="Keanu Reeves", decade=1990, genres="Action"),
    _q("actor_decade_genre", "a drama from the 2000s with cate blanchett", cast="Cate Blanchett",
       decade=2000, genres="Drama"),
    _q("actor_decade_genre", "russel crowe western 2000s", cast="Russell Crowe", decade=2000,
       genres="Western"),
    _q("actor_decade_genre", "hugo weaving horror 2010s", cast="Hugo Weaving", decade=2010, genres="Horror"),
    _q("actor_decade_genre", "liv tyler 90s sci fi", cast="Liv Tyler", decade=1990, genres="Sci-Fi"),
    _q("actor_decade_genre", "edward norton comedies 2010s", cast="Edward Norton", decade=2010,
       genres="Comedy"),
    _q("actor_decade_genre", "2000s war movie jared leto", cast="Jared Leto", decade=2000, genres="War"),
    _q("actor_decade_genre", "tilda swinton fantasy from the 2000s", cast="Tilda Swinton", decade=2000,
       genres="Fantasy"),
    _q("actor_decade_genre", "80s harrison ford scifi", cast="Harrison Ford", decade=1980, genres="Sci-Fi"),
    _q("actor_decade_genre", "laurence fishburne horror 2010s", cast="Laurence Fishburne", decade=2010,
       genres="Horror"),
    _q("actor_decade_genre", "steve buscemi comedy 90s", cast="Steve Buscemi", decade=1990, genres="Comedy"),
    _q("actor_decade_genre", "phillip seymour hoffman romance 2000s", cast="Philip Seymour Hoffman",
       decade=2000, genres="Romance"),
    _q("actor_decade_genre", "2010s drama kate winslet", cast="Kate Winslet", decade=2010, genres="Drama"),
    _q("actor_decade_genre", "christopher walken musical 2000s", cast="Christopher Walken", decade=2000,
       genres="Musical"),
    _q("actor_decade_genre", "owen wilson fantasy adventure 2000s", cast="Owen Wilson", decade=2000,
       genres=["Fantasy", "Adventure"]),
    _q("actor_decade_genre", "willem dafoe 2000s horror", cast="Willem Dafoe", decade=2000, genres="Horror"),
    # 2. A genre in other words, an actor and a decade in words.
    _q("synonym_actor_decade_words", "ben stiller flick that makes you laugh from the two-thousands",
       cast="Ben Stiller", decade=2000, genres="Comedy"),
    _q("synonym_actor_decade_words", "bruce willis scary movie from the nineties", cast="Bruce Willis",
       decade=1990, genres="Horror"),
    _q("synonym_actor_decade_words", "space adventure with harrison ford back in the eighties",
       cast="Harrison Ford", decade=1980, genres=["Sci-Fi", "Adventure"]),
    _q("synonym_actor_decade_words", "cop film denzel washington the two thousands",
       cast="Denzel Washington", decade=2000, genres="Crime"),
    _q("synonym_actor_decade_words", "nicole kidman tearjerker from the twenty tens", cast="Nicole Kidman",
       decade=2010, genres="Drama"),
    _q("synonym_actor_decade_words", "sigourney weaver monster movie from the seventies",
       cast="Sigourney Weaver", decade=1970, genres="Horror"),
    _q("synonym_actor_decade_words", "song and dance picture with meryl streep in the two-thousands",
       cast="Meryl Streep", decade=2000, genres="Musical"),
    _q("synonym_actor_decade_words", "jim carrey cracking me up, the noughties", cast="Jim Carrey",
       decade=2000, genres="Comedy"),
    _q("synonym_actor_decade_words", "mafia movie with de niro from the nineties", cast="Robert De Niro",
       decade=1990, genres="Crime"),
    _q("synonym_actor_decade_words", "samuel l jackson cowboys and gunfights in the twenty-tens",
       cast="Samuel L. Jackson", decade=2010, genres="Western"),
    _q("synonym_actor_decade_words", "tom cruise soldiers and battles during the two thousands",
       cast="Tom Cruise", decade=2000, genres="War"),
    _q("synonym_actor_decade_words", "harrison ford something the kids can watch from the twenty tens",
       cast="Harrison Ford", decade=2010, genres="Family"),
    _q("synonym_actor_decade_words", "true life story russell crowe the two-thousands", cast="Russell Crowe",
       decade=2000, genres="Biography"),
    _q("synonym_actor_decade_words", "morgan freeman athletes drama from the aughts", cast="Morgan Freeman",
       decade=2000, genres=["Sport", "Drama"]),
    _q("synonym_actor_decade_words", "swords and sorcery cate blanchett twenty-tens", cast="Cate Blanchett",
       decade=2010, genres="Fantasy"),
    _q("synonym_actor_decade_words", "a spine chiller with julianne moore from the twenty tens",
       cast="Julianne Moore", decade=2010, genres="Horror"),
    # 3. Spanish: a genre in Spanish with an actor, sometimes a decade.
    _q("spanish_genre_actor", "una comedia con Ben Stiller", "es", cast="Ben Stiller", genres="Comedy"),
    _q("spanish_genre_actor", "peli de miedo con nicole kidman", "es", cast="Nicole Kidman",
       genres="Horror"),
    _q("spanish_genre_actor", "pelicula de accion de keanu reeves", "es", cast="Keanu Reeves",
       genres="Action"),
    _q("spanish_genre_actor", "pelis de guerra con tom cruise", "es", cast="Tom Cruise", genres="War"),
    _q("spanish_genre_actor", "drama con meryl streep de los años 2010", "es", cast="Meryl Streep",
       genres="Drama", decade=2010),
    _q("spanish_genre_actor", "comedia romantica con owen wilson", "es", cast="Owen Wilson",
       genres=["Romance", "Comedy"]),
    _q("spanish_genre_actor", "una peli de animación con tom hanks", "es", cast="Tom Hanks",
       genres="Animation"),
    _q("spanish_genre_actor", "una de vaqueros con jeff bridges", "es", cast="Jeff Bridges",
       genres="Western"),
    _q("spanish_genre_actor", "películas de fantasía con helena bonham carter", "es",
       cast="Helena Bonham Carter", genres="Fantasy"),
    _q("spanish_genre_actor", "thriller de suspenso con morgan freeman", "es", cast="Morgan Freeman",
       genres="Thriller"),
    _q("spanish_genre_actor", "musical con hugh jackman", "es", cast="Hugh Jackman", genres="Musical"),
    _q("spanish_genre_actor", "policiaca con denzel washington", "es", cast="Denzel Washington",
       genres="Crime"),
    _q("spanish_genre_actor", "una de terror de los noventa con bruce willis", "es", cast="Bruce Willis",
       genres="Horror", decade=1990),
    _q("spanish_genre_actor", "biografica con russell crowe", "es", cast="Russell Crowe", genres="Biography"),
    _q("spanish_genre_actor", "cine bélico con brad pitt", "es", cast="Brad Pitt", genres="War"),
    _q("spanish_genre_actor", "pelicula romantica de los 90 con kate winslet", "es", cast="Kate Winslet",
       genres="Romance", decade=1990),
    # 4. French: a genre and a decade in French forms.
    _q("french_genre_decade", "film d'épouvante années 2000", "fr", genres="Horror", decade=2000),
    _q("french_genre_decade", "comédie des années 90", "fr", genres="Comedy", decade=1990),
    _q("french_genre_decade", "film de science fiction années 80", "fr", genres="Sci-Fi", decade=1980),
    _q("french_genre_decade", "drame des années 2010", "fr", genres="Drama", decade=2010),
    _q("french_genre_decade", "film de guerre années 2010", "fr", genres="War", decade=2010),
    _q("french_genre_decade", "un western des années 2000", "fr", genres="Western", decade=2000),
    _q("french_genre_decade", "dessin animé années 2000", "fr", genres="Animation", decade=2000),
    _q("french_genre_decade", "polar années 90", "fr", genres="Crime", decade=1990),
    _q("french_genre_decade", "comédie musicale des années 2010", "fr", genres="Musical", decade=2010),
    _q("french_genre_decade", "film fantastique des années 2000", "fr", genres="Fantasy", decade=2000),
    _q("french_genre_decade", "film d'aventure des années 80", "fr", genres="Adventure", decade=1980),
    _q("french_genre_decade", "thriller des années quatre-vingt-dix", "fr", genres="Thriller", decade=1990),
    _q("french_genre_decade", "film biographique années 2000", "fr", genres="Biography", decade=2000),
    _q("french_genre_decade", "film de sport de la décennie 2010", "fr", genres="Sport", decade=2010),
    _q("french_genre_decade", "un film d'amour des années 90", "fr", genres="Romance", decade=1990),
    _q("french_genre_decade", "science-fiction des années 70", "fr", genres="Sci-Fi", decade=1970),
    # 5. German: genre with a decade, an actor or a director.
    _q("german_mixed", "Krimi aus den 90ern mit Samuel L. Jackson", "de", genres="Crime", decade=1990,
       cast="Samuel L. Jackson"),
    _q("german_mixed", "gruselfilm aus den 2010ern", "de", genres="Horror", decade=2010),
    _q("german_mixed", "komödie mit will ferrell", "de", genres="Comedy", cast="Will Ferrell"),
    _q("german_mixed", "Science-Fiction der achtziger Jahre", "de", genres="Sci-Fi", decade=1980),
    _q("german_mixed", "ein Western von Quentin Tarantino", "de", genres="Western",
       director="Quentin Tarantino"),
    _q("german_mixed", "abenteuerfilme mit harrison ford", "de", genres="Adventure", cast="Harrison Ford"),
    _q("german_mixed", "Actionfilm aus den Neunzigern", "de", genres="Action", decade=1990),
    _q("german_mixed", "liebeskomödie mit hugh grant", "de", genres=["Romance", "Comedy"],
       cast="Hugh Grant"),
    _q("german_mixed", "Zeichentrick aus den 90ern", "de", genres="Animation", decade=1990),
    _q("german_mixed", "filme von ridley scott aus den nullerjahren", "de", director="Ridley Scott",
       decade=2000),
    _q("german_mixed", "Thriller mit Jake Gyllenhaal aus den 2010er Jahren", "de", genres="Thriller",
       cast="Jake Gyllenhaal", decade=2010),
    _q("german_mixed", "musical mit johnny depp", "de", genres="Musical", cast="Johnny Depp"),
    _q("german_mixed", "Familienfilm der Nullerjahre", "de", genres="Family", decade=2000),
    _q("german_mixed", "kriegsfilm mit brad pitt", "de", genres="War", cast="Brad Pitt"),
    _q("german_mixed", "Dokumentarfilm aus den 2000ern", "de", genres="Documentary", decade=2000),
    _q("german_mixed", "Fantasyfilm der Zehnerjahre", "de", genres="Fantasy", decade=2010),
    # 6. A surname alone or with one generic word (the filter names the person).
    _q("surname_only", "verbinski", director="Gore Verbinski"),
    _q("surname_only", "greengrass movie", director="Paul Greengrass"),
    _q("surname_only", "mangold film", director="James Mangold"),
    _q("surname_only", "schwarzeneger", cast="Arnold Schwarzenegger"),
    _q("surname_only", "fassbender", cast="Michael Fassbender"),
    _q("surname_only", "gosling films", cast="Ryan Gosling"),
    _q("surname_only", "mcavoy", cast="James McAvoy"),
    _q("surname_only", "swinton movies", cast="Tilda Swinton"),
    _q("surname_only", "blanchet", cast="Cate Blanchett"),
    _q("surname_only", "galifinakis", cast="Zach Galifianakis"),
    _q("surname_only", "cronenberg", director="David Cronenberg"),
    _q("surname_only", "kidman", cast="Nicole Kidman"),
    _q("surname_only", "streep movies", cast="Meryl Streep"),
    _q("surname_only", "kubrick", director="Stanley Kubrick"),
    _q("surname_only", "bigelow film", director="Kathryn Bigelow"),
    _q("surname_only", "zemeckis", director="Robert Zemeckis"),
    # 7. Titles with typos, missing words or articles.
    _q("typo_title", "the dark night rises", title="The Dark Knight Rises"),
    _q("typo_title", "harry poter deathly hallows", title=_HALLOWS),
    _q("typo_title", "incepton", title="Inception"),
    _q("typo_title", "gran torrino", title="Gran Torino"),
    _q("typo_title", "the socail network", title="The Social Network"),
    _q("typo_title", "gladiater", title="Gladiator"),
    _q("typo_title", "momento", title="Memento"),
    _q("typo_title", "ratatoullie", title="Ratatouille"),
    _q("typo_title", "django unchanied", title="Django Unchained"),
    _q("typo_title", "brokeback mountian", title="Brokeback Mountain"),
    _q("typo_title", "kill bill vol 1", title="Kill Bill: Volume 1"),
    _q("typo_title", "hangover 2", title="The Hangover Part II"),
    _q("typo_title", "mission impossible ghost protocall", title="Mission: Impossible – Ghost Protocol"),
    _q("typo_title", "pirates of the carribean dead mans chest",
       title="Pirates of the Caribbean: Dead Man's Chest"),
    _q("typo_title", "charlie and the chocolate factroy", title="Charlie and the Chocolate Factory"),
    _q("typo_title", "requiem for dream", title="Requiem for a Dream"),
    # 8. Attribute combinations.
    _q("combo", "ridley scott 2000s", director="Ridley Scott", decade=2000),
    _q("combo", "eastwood as director 2010s", director="Clint Eastwood", decade=2010),
    _q("combo", "james cameron 90s", director="James Cameron", decade=1990),
    _q("combo", "pg-13 comedies from 2005", mpaa_rating="PG-13", genres="Comedy", year=2005),
    _q("combo", "r rated war film 2000s", mpaa_rating="R", genres="War", decade=2000),
    _q("combo", "g rated musical 90s", mpaa_rating="G", genres="Musical", decade=1990),
    _q("combo", "pg fantasy 2010s", mpaa_rating="PG", genres="Fantasy", decade=2010),
    _q("combo", "aussie comedy", country="Australia", genres="Comedy"),
    _q("combo", "new zealand fantasy", country="New Zealand", genres="Fantasy"),
    _q("combo", "danish drama", country="Denmark", genres="Drama"),
    _q("combo", "a film in french from 2012", language="French", year=2012),
    _q("combo", "a movie all in spanish from 2006", language_only="Spanish", year=2006),
    _q("combo", "2000s british horror", country="United Kingdom", genres="Horror", decade=2000),
    _q("combo", "nc17 drama", mpaa_rating="NC-17", genres="Drama"),
    _q("combo", "sci fi made in canada 2000s", country="Canada", genres="Sci-Fi", decade=2000),
    _q("combo", "films with german dialogue from the 2000s", language="German", decade=2000),
    # 9. A screenwriter or a production company with something else.
    _q("writer_or_studio", "pixar movies from the 2000s", production="Pixar", decade=2000),
    _q("writer_or_studio", "dreamworks animation 2010s", production="DreamWorks Animation", decade=2010),
    _q("writer_or_studio", "coen brothers script comedy", writer=_COENS, genres="Comedy"),
    _q("writer_or_studio", "aaron sorkin biopic", writer="Aaron Sorkin", genres="Biography"),
    _q("writer_or_studio", "horror written by guillermo del toro", writer="Guillermo del Toro",
       genres="Horror"),
    _q("writer_or_studio", "marvel studios comedy", production="Marvel Studios", genres="Comedy"),
    _q("writer_or_studio", "amblin war movies", production="Amblin Entertainment", genres="War"),
    _q("writer_or_studio", "new line cinema horror", production="New Line Cinema", genres="Horror"),
    _q("writer_or_studio", "jonathan nolan screenplay sci-fi", writer="Jonathan Nolan", genres="Sci-Fi"),
    _q("writer_or_studio", "miramax 90s", production="Miramax", decade=1990),
    _q("writer_or_studio", "apatow productions romcom", production="Apatow Productions",
       genres=["Romance", "Comedy"]),
    _q("writer_or_studio", "animated, wes anderson wrote it", writer="Wes Anderson", genres="Animation"),
    _q("writer_or_studio", "shyamalan scripts from the 2010s", writer="M. Night Shyamalan", decade=2010),
    _q("writer_or_studio", "lucasfilm 2000s", production="Lucasfilm", decade=2000),
    _q("writer_or_studio", "legendary pictures sci fi 2014", production="Legendary Pictures",
       genres="Sci-Fi", year=2014),
    _q("writer_or_studio", "steve kloves harry potter scripts", writer="Steve Kloves",
       title_contains="Harry Potter"),
)
# fmt: on


if __name__ == "__main__":
    sys.exit(main(None, SPECS, CATEGORIES, DEFAULT_OUT))
