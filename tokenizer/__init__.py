"""A from-scratch tokenizer package: byte-level BPE and char tokenizers; train, encode, decode, save.

    from tokenizer import BPETokenizer, TextRange
    tok = BPETokenizer.train([TextRange.whole("corpus.txt")], ["<|endoftext|>"], vocab_size=10_000)
    tok.decode(tok.encode("Hello world")) == "Hello world"

Every tokenizer implements `BaseTokenizer` (`tokenizer.base`): train, encode, decode, save/load,
fingerprint, to_dict/from_dict and special-token roles. `BPETokenizer` is the byte-level BPE (ids
0..255 are the single bytes, then the special tokens, then one id per merge; `Tokenizer` is its
older name, kept as an alias); `CharTokenizer` the character-level one (an id per character of a
corpus, then the special tokens). `train_bpe` gives a BPE's vocab and merges; `load_tokenizer(path)`
/ `tokenizer_from_dict(d)` read a saved tokenizer of any kind. This package imports nothing of llm_lit.
"""

from .base import END_OF_TEXT, BaseTokenizer
from .bpe import BPETokenizer, Tokenizer
from .char import CharTokenizer
from .errors import TokenizerError
from .kinds import TOKENIZER_KINDS, AnyTokenizer, load_tokenizer, tokenizer_from_dict
from .pretokenize import TextRange
from .train import train_bpe

__all__ = ["END_OF_TEXT", "AnyTokenizer", "BPETokenizer", "BaseTokenizer", "CharTokenizer", "TOKENIZER_KINDS",
           "TextRange", "Tokenizer", "TokenizerError", "load_tokenizer", "tokenizer_from_dict", "train_bpe"]
