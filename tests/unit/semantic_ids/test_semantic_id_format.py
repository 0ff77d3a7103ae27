"""The semantic-ID format: both forms round-trip, anything else is rejected with a clear error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic_ids.ids import MAX_LEVELS, IdScheme, InvalidSemanticId, SemanticId, code_token
from semantic_ids.trie import PrefixTrie

code_tuples = st.lists(st.integers(min_value=0, max_value=99_999), min_size=1, max_size=MAX_LEVELS).map(tuple)


@given(code_tuples)
def test_compact_form_round_trips(codes: tuple[int, ...]) -> None:
    semantic_id = SemanticId(codes)
    assert SemanticId.parse(semantic_id.compact) == semantic_id
    assert semantic_id.compact == "-".join(map(str, codes))


@given(code_tuples)
def test_token_form_round_trips_and_matches_compact(codes: tuple[int, ...]) -> None:
    semantic_id = SemanticId(codes)
    parsed = SemanticId.parse(semantic_id.tokens)
    assert parsed == semantic_id
    assert parsed.compact == semantic_id.compact
    assert semantic_id.tokens.startswith("[SEM_START][SEM_0_") and semantic_id.tokens.endswith("[SEM_END]")


@given(code_tuples, st.sampled_from([" ", "\n", "\t "]))
def test_surrounding_whitespace_is_rejected(codes: tuple[int, ...], space: str) -> None:
    # One spelling per ID: a padded one would reach the same item under a second URL.
    for text in (space + SemanticId(codes).compact, SemanticId(codes).tokens + space):
        with pytest.raises(InvalidSemanticId):
            SemanticId.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "12-",
        "-12",
        "12--7",
        "12-7-",
        "-1-2",
        "12 7 33",
        "12_7_33",
        "1.5-2",
        "[SEM_START][SEM_1_3][SEM_0_2][SEM_END]",  # levels out of order
        "[SEM_START][SEM_0_3][SEM_0_2][SEM_END]",  # level repeated
        "[SEM_START][SEM_0_3][SEM_2_2][SEM_END]",  # level skipped
        "[SEM_START][SEM_END]",  # no codes
        "[SEM_START][SEM_0_3]",  # no end
        "[SEM_0_3][SEM_END]",  # no start
        "[SEM_START][SEM_0_-3][SEM_END]",  # negative code
        "[SEM_START]12-7[SEM_END]",  # mixed forms
        "12-[SEM_1_7]",  # mixed forms
        "[SEM_START][SEM_0_1][SEM_END]-3",
        "[SEM_START][SEM_0_1][SEM_END][SEM_START][SEM_0_1][SEM_END]",
        "[sem_start][sem_0_1][sem_end]",
        "-".join(["1"] * (MAX_LEVELS + 1)),  # too many levels
        "\u0663-\u0661-\u0662",  # Arabic-Indic digits
        "\uff11\uff12-7",  # fullwidth digits
        "[SEM_START][SEM_0_\u0663][SEM_END]",
        "012-7",  # leading zero
        "12-07",
        "00",
        "[SEM_START][SEM_0_01][SEM_END]",
        "[SEM_START][SEM_00_1][SEM_END]",
    ],
)
def test_malformed_strings_are_rejected(text: str) -> None:
    with pytest.raises(InvalidSemanticId):
        SemanticId.parse(text)


@given(st.text(alphabet="0123456789-[]SEMTARNDx_ ", max_size=40))
def test_whatever_parses_is_exactly_one_of_the_two_forms(text: str) -> None:
    try:
        parsed = SemanticId.parse(text)
    except InvalidSemanticId:
        return
    assert text in (parsed.compact, parsed.tokens)  # the one canonical spelling of either form


@given(st.lists(st.integers(max_value=-1), min_size=1, max_size=4))
def test_negative_codes_are_rejected(codes: list[int]) -> None:
    with pytest.raises(InvalidSemanticId, match="non-negative"):
        SemanticId(tuple(codes))


def test_non_integer_codes_are_rejected() -> None:
    with pytest.raises(InvalidSemanticId):
        SemanticId((1, True))
    with pytest.raises(InvalidSemanticId):
        SemanticId(())
    with pytest.raises(InvalidSemanticId):
        SemanticId.parse(12)  # type: ignore[arg-type]


SCHEME = IdScheme((32, 32, 32, 3))


@given(st.tuples(*(st.integers(0, size - 1) for size in SCHEME.codebook_sizes)))
def test_scheme_accepts_codes_in_range(codes: tuple[int, ...]) -> None:
    assert SCHEME.parse(SemanticId(codes).compact).codes == codes


@given(st.integers(0, 3), st.integers(0, 1000))
def test_scheme_rejects_a_code_out_of_range(level: int, excess: int) -> None:
    codes = [0, 0, 0, 0]
    codes[level] = SCHEME.codebook_sizes[level] + excess
    with pytest.raises(InvalidSemanticId, match=f"level {level}"):
        SCHEME.validate(SemanticId(tuple(codes)))


@pytest.mark.parametrize("codes", [(1, 2, 0), (1, 2, 0, 0, 0)])
def test_scheme_rejects_the_wrong_number_of_levels(codes: tuple[int, ...]) -> None:
    with pytest.raises(InvalidSemanticId, match="4"):
        SCHEME.validate(SemanticId(codes))


def test_all_tokens_keep_each_level_contiguous() -> None:
    tokens = IdScheme((3, 2)).all_tokens()
    assert tokens[3:] == [
        code_token(0, 0),
        code_token(0, 1),
        code_token(0, 2),
        code_token(1, 0),
        code_token(1, 1),
    ]
    assert len(set(tokens)) == len(tokens)


TRIE_IDS = [(0, 1, 0), (0, 1, 1), (0, 3, 0), (2, 0, 0), (2, 0, 2)]


@pytest.fixture()
def trie() -> PrefixTrie:
    return PrefixTrie([SemanticId(codes) for codes in TRIE_IDS], IdScheme((4, 4, 3)))


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ((), [0, 2]),
        ((0,), [1, 3]),
        ((0, 1), [0, 1]),
        ((2, 0), [0, 2]),
        ((1,), []),  # no item starts with 1
        ((0, 2), []),  # dead end
        ((0, 1, 0), []),  # complete ID: nothing follows
        ((9,), []),  # out of the codebook
    ],
)
def test_trie_allows_exactly_the_existing_continuations(
    trie: PrefixTrie, prefix: tuple[int, ...], allowed: list[int]
) -> None:
    assert trie.allowed_codes(prefix) == allowed


@given(st.sets(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=30))
def test_trie_walks_reach_exactly_the_ids_it_was_built_from(ids: set[tuple[int, int, int]]) -> None:
    trie = PrefixTrie([SemanticId(codes) for codes in ids], IdScheme((4, 4, 3)))
    reached = {
        (a, b, c)
        for a in trie.allowed_codes(())
        for b in trie.allowed_codes((a,))
        for c in trie.allowed_codes((a, b))
    }
    assert reached == ids
    assert len(trie) == len(ids)
    assert all(SemanticId(codes) in trie for codes in ids)


def _reference_tables(ids: list[tuple[int, ...]], sizes: tuple[int, ...]) -> tuple[list[list], list[list]]:
    """The trie's tables built the plain way: sorted prefixes per level, one child and rest per node."""
    unique = sorted(set(ids))
    nodes = [
        {p: i for i, p in enumerate(sorted({c[:level] for c in unique}))} for level in range(len(sizes) + 1)
    ]
    children, rest = [], []
    for level, size in enumerate(sizes):
        table = [[-1] * size for _ in nodes[level]]
        for prefix, child in nodes[level + 1].items():
            table[nodes[level][prefix[:-1]]][prefix[-1]] = child
        below: dict[int, list] = {}
        for codes in unique:
            below.setdefault(nodes[level][codes[:level]], []).append(list(codes[level:]))
        only = [b[0] if len(b) == 1 else [-1] * (len(sizes) - level) for _, b in sorted(below.items())]
        children.append(table)
        rest.append(only)
    return children, rest


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 2), st.integers(0, 5), st.integers(0, 1)), min_size=1
    )
)
def test_trie_tables_are_those_of_the_plain_construction(ids: list[tuple[int, int, int, int]]) -> None:
    """Duplicates, shared prefixes and lone IDs below a node: the same node numbers, children and rests
    as building them prefix by prefix, and membership exactly the IDs given."""
    sizes = (5, 3, 6, 2)
    trie = PrefixTrie([SemanticId(codes) for codes in ids], IdScheme(sizes))
    children, rest = _reference_tables(ids, sizes)
    assert [t.tolist() for t in trie.children] == children
    assert [t.tolist() for t in trie.rest] == rest
    assert len(trie) == len(set(ids))
    every = {(a, b, c, d) for a in range(5) for b in range(3) for c in range(6) for d in range(2)}
    assert {codes for codes in every if SemanticId(codes) in trie} == set(ids)
    assert SemanticId((0, 0, 0)) not in trie and SemanticId((9, 0, 0, 0)) not in trie


def test_trie_rejects_ids_outside_its_scheme() -> None:
    with pytest.raises(InvalidSemanticId):
        PrefixTrie([SemanticId((4, 0, 0))], IdScheme((4, 4, 3)))
    with pytest.raises(InvalidSemanticId):
        PrefixTrie([], IdScheme((4, 4, 3)))
