"""A from-scratch byte-level BPE tokenizer: train on a corpus, encode, decode, save.

    from tokenizer import train_bpe, Tokenizer
    vocab, merges = train_bpe("corpus.txt", 10_000, ["<|endoftext|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
    tok.decode(tok.encode("Hello world")) == "Hello world"

Ids 0..255 are the single bytes, then the special tokens, then one id per merge.
"""

from .bpe import Tokenizer
from .errors import TokenizerError
from .train import train_bpe

__all__ = ["Tokenizer", "TokenizerError", "train_bpe"]
