"""The contract shared by training and serving: semantic-ID format, prefix trie, bundle manifest,
and the trie-constrained decoder. Depends on neither ``training`` nor ``app``."""

from semantic_ids.ids import REC, SEM_END, SEM_START, IdScheme, InvalidSemanticId, SemanticId, code_token

__all__ = ["REC", "SEM_END", "SEM_START", "IdScheme", "InvalidSemanticId", "SemanticId", "code_token"]
