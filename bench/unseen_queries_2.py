"""A second hand-written query set for the demo catalogue, of kinds the first lacks (issue 24).

Never tuned on: it was written after the fusion rule, the field weights and the attribute words were
chosen on training-side queries, and it only measures. Relevance comes from each query's filter, as in
``bench.unseen_queries`` (same filter keys, same checks: a filter value the catalogue lacks, a query a
fine-tuning template could write, or one that is a training query verbatim stops the build)::

    .venv/bin/python -m bench.unseen_queries_2 --catalogue artifacts/runs/demo/catalogue.jsonl

writes ``bench/queries/demo_unseen_2.jsonl`` (checked in). The kinds:

- ``deep_cast``: an actor billed seventh or later (no short item text shows them), alone or with a
  word of context;
- ``deep_cast_attributes``: such an actor with a decade, a year or a genre;
- ``surname``: an actor's or a director's surname alone, or with one more word;
- ``writer``: a screenwriter, the catalogue's ``writer`` field;
- ``production``: a production company, with a genre or a decade;
- ``rating_genre``: an MPAA rating with a genre, in several forms;
- ``foreign_decade_genre``: a genre and a decade in French, Spanish or German;
- ``synonym_person``: a genre in other words with a person, sometimes a decade in words.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.unseen_queries import QuerySpec, main, spec_writer

CATEGORIES = (
    "deep_cast", "deep_cast_attributes", "surname", "writer", "production", "rating_genre",
    "foreign_decade_genre", "synonym_person",
)  # fmt: skip
DEFAULT_OUT = Path("bench/queries/demo_unseen_2.jsonl")


_q = spec_writer(CATEGORIES)


# fmt: off
SPECS: tuple[QuerySpec, ...] = (
    _q("deep_cast", "nick frost", cast="Nick Frost"),
    _q("deep_cast", "movies featuring Joanna Lumley", cast="Joanna Lumley"),
    _q("deep_cast", "Madhur Mittal", cast="Madhur Mittal"),
    _q("deep_cast", "that film with juliet aubrey", cast="Juliet Aubrey"),
    _q("deep_cast", "Andrew Divoff villain role", cast="Andrew Divoff"),
    _q("deep_cast", "something with sam riley", cast="Sam Riley"),
    _q("deep_cast", "Thomas Sadoski", cast="Thomas Sadoski"),
    _q("deep_cast", "christine ebersole appears in", cast="Christine Ebersole"),
    _q("deep_cast", "Tye Sheridan as a boy", cast="Tye Sheridan"),
    _q("deep_cast", "roger allam supporting part", cast="Roger Allam"),
    _q("deep_cast", "films where spike jonze acts", cast="Spike Jonze"),
    _q("deep_cast", "Peter Hermann", cast="Peter Hermann"),
    _q("deep_cast", "brenton thwaites", cast="Brenton Thwaites"),
    _q("deep_cast", "alan dale small role", cast="Alan Dale"),
    _q("deep_cast_attributes", "Nick Frost comedy", cast="Nick Frost", genres="Comedy"),
    _q("deep_cast_attributes", "a fantasy film with Sharlto Copley", cast="Sharlto Copley", genres="Fantasy"),
    _q("deep_cast_attributes", "Carey Mulligan musical", cast="Carey Mulligan", genres="Musical"),
    _q("deep_cast_attributes", "garrett hedlund 2013", cast="Garrett Hedlund", year=2013),
    _q("deep_cast_attributes", "kelly reilly drama from 2012", cast="Kelly Reilly", genres="Drama",
       year=2012),
    _q("deep_cast_attributes", "james badge dale western", cast="James Badge Dale", genres="Western"),
    _q("deep_cast_attributes", "Nicholas Hoult fairy-tale adventure", cast="Nicholas Hoult",
       genres=["Fantasy", "Adventure"]),
    _q("deep_cast_attributes", "Lucas Black baseball biopic", cast="Lucas Black", genres="Biography"),
    _q("deep_cast_attributes", "mark hamill from the seventies", cast="Mark Hamill", decade=1970),
    _q("deep_cast_attributes", "Ed Helms comedy from 2009", cast="Ed Helms", genres="Comedy", year=2009),
    _q("deep_cast_attributes", "Amy Ryan crime movie in the 2000s", cast="Amy Ryan", genres="Crime",
       decade=2000),
    _q("deep_cast_attributes", "scott bakula from the nineties", cast="Scott Bakula", decade=1990),
    _q("deep_cast_attributes", "Zooey Deschanel sci-fi comedy", cast="Zooey Deschanel",
       genres=["Sci-Fi", "Comedy"]),
    _q("deep_cast_attributes", "Stephen Fry in a 2005 film", cast="Stephen Fry", year=2005),
    _q("surname", "mcconaughey", cast="Matthew McConaughey"),
    _q("surname", "Tarantino", director="Quentin Tarantino"),
    _q("surname", "villeneuve films", director="Denis Villeneuve"),
    _q("surname", "Gyllenhaal", cast=["Jake Gyllenhaal"]),
    _q("surname", "something by fincher", director="David Fincher"),
    _q("surname", "dicaprio", cast="Leonardo DiCaprio"),
    _q("surname", "Spielberg", director="Steven Spielberg"),
    _q("surname", "cumberbatch", cast="Benedict Cumberbatch"),
    _q("surname", "Scorsese", director="Martin Scorsese"),
    _q("surname", "chastain", cast="Jessica Chastain"),
    _q("surname", "Aronofsky", director="Darren Aronofsky"),
    _q("surname", "Theron", cast="Charlize Theron"),
    _q("writer", "written by Charlie Kaufman", writer="Charlie Kaufman"),
    _q("writer", "screenplay by Aaron Sorkin", writer="Aaron Sorkin"),
    _q("writer", "Diablo Cody script", writer="Diablo Cody"),
    _q("writer", "films penned by Nick Hornby", writer="Nick Hornby"),
    _q("writer", "steve kloves screenplay", writer="Steve Kloves"),
    _q("writer", "a script by Tony Gilroy", writer="Tony Gilroy"),
    _q("writer", "Paul Haggis wrote it", writer="Paul Haggis"),
    _q("writer", "screenwriter Brian Helgeland", writer="Brian Helgeland"),
    _q("production", "Pixar animation", production="Pixar"),
    _q("production", "a Working Title comedy", production="Working Title Films", genres="Comedy"),
    _q("production", "Lucasfilm", production="Lucasfilm"),
    _q("production", "Legendary Pictures action", production="Legendary Pictures", genres="Action"),
    _q("production", "searchlight pictures drama", production="Searchlight Pictures", genres="Drama"),
    _q("production", "Jerry Bruckheimer blockbuster", production="Jerry Bruckheimer Films"),
    _q("production", "StudioCanal thriller", production="StudioCanal", genres="Thriller"),
    _q("production", "Focus Features romance", production="Focus Features", genres="Romance"),
    _q("rating_genre", "an R-rated comedy", mpaa_rating="R", genres="Comedy"),
    _q("rating_genre", "horror rated R", mpaa_rating="R", genres="Horror"),
    _q("rating_genre", "PG family movie", mpaa_rating="PG", genres="Family"),
    _q("rating_genre", "a G rated animated film", mpaa_rating="G", genres="Animation"),
    _q("rating_genre", "pg-13 sci fi", mpaa_rating="PG-13", genres="Sci-Fi"),
    _q("rating_genre", "r rated war movie", mpaa_rating="R", genres="War"),
    _q("rating_genre", "PG13 fantasy adventure", mpaa_rating="PG-13", genres=["Fantasy", "Adventure"]),
    _q("rating_genre", "restricted crime thriller", mpaa_rating="R", genres=["Crime", "Thriller"]),
    _q("foreign_decade_genre", "un film d'horreur des années 2000", "fr", genres="Horror", decade=2000),
    _q("foreign_decade_genre", "comédie romantique années 2010", "fr", genres=["Comedy", "Romance"],
       decade=2010),
    _q("foreign_decade_genre", "les meilleurs films de guerre des années 2000", "fr", genres="War",
       decade=2000),
    _q("foreign_decade_genre", "un dessin animé des années 90", "fr", genres="Animation", decade=1990),
    _q("foreign_decade_genre", "película de terror de los 2000", "es", genres="Horror", decade=2000),
    _q("foreign_decade_genre", "comedias de los noventa", "es", genres="Comedy", decade=1990),
    _q("foreign_decade_genre", "ciencia ficción de los años 2010", "es", genres="Sci-Fi", decade=2010),
    _q("foreign_decade_genre", "un western de la década de 2010", "es", genres="Western", decade=2010),
    _q("foreign_decade_genre", "Kriegsfilm aus den 2000ern", "de", genres="War", decade=2000),
    _q("foreign_decade_genre", "Zeichentrickfilm der 2010er", "de", genres="Animation", decade=2010),
    _q("foreign_decade_genre", "Liebesfilme der neunziger", "de", genres="Romance", decade=1990),
    _q("foreign_decade_genre", "ein Krimi aus den 2000er Jahren", "de", genres="Crime", decade=2000),
    _q("synonym_person", "a scary flick with Ethan Hawke", genres="Horror", cast="Ethan Hawke"),
    _q("synonym_person", "lighthearted Steve Carell picture", genres="Comedy", cast="Steve Carell"),
    _q("synonym_person", "Tom Cruise futuristic action", genres="Sci-Fi", cast="Tom Cruise"),
    _q("synonym_person", "a gangster picture with Al Pacino", genres="Crime", cast="Al Pacino"),
    _q("synonym_person", "Ridley Scott historical epic", genres="History", director="Ridley Scott"),
    _q("synonym_person", "a cartoon voiced by Tom Hanks", genres="Animation", cast="Tom Hanks"),
    _q("synonym_person", "Keira Knightley costume romance", genres="Romance", cast="Keira Knightley"),
    _q("synonym_person", "a sporty underdog story with Brad Pitt", genres="Sport", cast="Brad Pitt"),
    _q("synonym_person", "a two-thousands whodunit with Daniel Craig", genres="Mystery",
       cast="Daniel Craig", decade=2000),
    _q("synonym_person", "Jim Carrey funny movie from the noughties", genres="Comedy", cast="Jim Carrey",
       decade=2000),
    _q("synonym_person", "biographical drama starring Benedict Cumberbatch", genres="Biography",
       cast="Benedict Cumberbatch"),
    _q("synonym_person", "spooky film by Guillermo del Toro", genres="Horror", director="Guillermo del Toro"),
)
# fmt: on


if __name__ == "__main__":
    sys.exit(main(None, SPECS, CATEGORIES, DEFAULT_OUT))
