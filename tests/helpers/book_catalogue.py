"""A small catalogue that is not films: 40 books as a user's JSONL file, with an author, a list of
categories, a year, a publisher, a description, and fields the query templates must leave alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (title, author, year, categories)
_BOOKS = [
    ("Dune", "Frank Herbert", 1965, ["Science Fiction", "Classics"]),
    ("Dune Messiah", "Frank Herbert", 1969, ["Science Fiction"]),
    ("Children of Dune", "Frank Herbert", 1976, ["Science Fiction"]),
    ("The Left Hand of Darkness", "Ursula K. Le Guin", 1969, ["Science Fiction", "Classics"]),
    ("A Wizard of Earthsea", "Ursula K. Le Guin", 1968, ["Fantasy", "Young Adult"]),
    ("The Dispossessed", "Ursula K. Le Guin", 1974, ["Science Fiction", "Politics"]),
    ("Foundation", "Isaac Asimov", 1951, ["Science Fiction", "Classics"]),
    ("I, Robot", "Isaac Asimov", 1950, ["Science Fiction", "Short Stories"]),
    ("The Caves of Steel", "Isaac Asimov", 1954, ["Science Fiction", "Mystery"]),
    ("Pride and Prejudice", "Jane Austen", 1813, ["Romance", "Classics"]),
    ("Emma", "Jane Austen", 1815, ["Romance", "Classics"]),
    ("Persuasion", "Jane Austen", 1817, ["Romance"]),
    ("Sense and Sensibility", "Jane Austen", 1811, ["Romance", "Classics"]),
    ("Murder on the Orient Express", "Agatha Christie", 1934, ["Mystery", "Crime"]),
    ("And Then There Were None", "Agatha Christie", 1939, ["Mystery", "Crime", "Classics"]),
    ("The Murder of Roger Ackroyd", "Agatha Christie", 1926, ["Mystery", "Crime"]),
    ("Death on the Nile", "Agatha Christie", 1937, ["Mystery"]),
    ("The Hobbit", "J. R. R. Tolkien", 1937, ["Fantasy", "Classics"]),
    ("The Fellowship of the Ring", "J. R. R. Tolkien", 1954, ["Fantasy"]),
    ("The Two Towers", "J. R. R. Tolkien", 1954, ["Fantasy"]),
    ("The Return of the King", "J. R. R. Tolkien", 1955, ["Fantasy"]),
    ("Neuromancer", "William Gibson", 1984, ["Science Fiction", "Cyberpunk"]),
    ("Count Zero", "William Gibson", 1986, ["Science Fiction", "Cyberpunk"]),
    ("Pattern Recognition", "William Gibson", 2003, ["Thriller"]),
    ("Beloved", "Toni Morrison", 1987, ["Historical Fiction", "Classics"]),
    ("Song of Solomon", "Toni Morrison", 1977, ["Literary Fiction"]),
    ("The Bluest Eye", "Toni Morrison", 1970, ["Literary Fiction"]),
    ("One Hundred Years of Solitude", "Gabriel Garcia Marquez", 1967, ["Magical Realism", "Classics"]),
    ("Love in the Time of Cholera", "Gabriel Garcia Marquez", 1985, ["Romance", "Magical Realism"]),
    ("The Name of the Wind", "Patrick Rothfuss", 2007, ["Fantasy"]),
    ("The Wise Man's Fear", "Patrick Rothfuss", 2011, ["Fantasy"]),
    ("Gone Girl", "Gillian Flynn", 2012, ["Thriller", "Crime"]),
    ("Sharp Objects", "Gillian Flynn", 2006, ["Thriller", "Mystery"]),
    ("The Road", "Cormac McCarthy", 2006, ["Literary Fiction", "Post-Apocalyptic"]),
    ("Blood Meridian", "Cormac McCarthy", 1985, ["Literary Fiction", "Western"]),
    ("No Country for Old Men", "Cormac McCarthy", 2005, ["Thriller", "Crime"]),
    ("Station Eleven", "Emily St. John Mandel", 2014, ["Literary Fiction", "Post-Apocalyptic"]),
    ("Sea of Tranquility", "Emily St. John Mandel", 2022, ["Science Fiction"]),
    ("The Martian", "Andy Weir", 2011, ["Science Fiction", "Survival"]),
    ("Project Hail Mary", "Andy Weir", 2021, ["Science Fiction", "Survival"]),
]
_PUBLISHERS = ["Penguin", "Vintage", "Ace Books", "Harper", "Knopf"]


def book_rows() -> list[dict[str, Any]]:
    """The books as JSONL objects: ``item_id`` and ``title``, then the other fields."""
    rows = []
    for index, (title, author, year, categories) in enumerate(_BOOKS):
        rows.append(
            {
                "item_id": f"bk-{index:03d}",
                "title": title,
                "author": author,
                "categories": categories,
                "year": year,
                "publisher": _PUBLISHERS[index % len(_PUBLISHERS)],
                "description": f"A {categories[0].lower()} novel by {author}, first published in {year}, "
                f"and one of the books readers still recommend from that decade.",
                "isbn": f"978-0-{index:04d}-{year % 1000:03d}-{index % 10}",
                "pages": 180 + 7 * index,
                "in_stock": index % 3 != 0,
            }
        )
    return rows


def write_books(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in book_rows():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
