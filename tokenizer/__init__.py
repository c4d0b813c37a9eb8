"""A from-scratch byte-level BPE tokenizer: train on a corpus, encode, decode, save.

    from tokenizer import train_bpe, Tokenizer
    vocab, merges = train_bpe("corpus.txt", 10_000, ["<|endoftext|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
    tok.decode(tok.encode("Hello world")) == "Hello world"

Ids 0..255 are the single bytes, then the special tokens, then one id per merge.

`CharTokenizer` is the character-level one (an id per character of a corpus, then the special
tokens); `load_tokenizer(path)` / `tokenizer_from_dict(d)` read a saved tokenizer of either kind.
"""

from .bpe import Tokenizer
from .char import CharTokenizer
from .errors import TokenizerError
from .kinds import TOKENIZER_KINDS, AnyTokenizer, load_tokenizer, tokenizer_from_dict
from .train import train_bpe

__all__ = ["AnyTokenizer", "CharTokenizer", "TOKENIZER_KINDS", "Tokenizer", "TokenizerError", "load_tokenizer",
           "tokenizer_from_dict", "train_bpe"]
