"""llm_lit: train GPT-style language models with Lightning, on a core written from scratch.

The package reads top-down in the order data flows; each layer imports only the layers above it
in this list (a test, `tests/test_import_layers.py`, keeps it so):

    tokenizer/     (a package of its own) byte-level BPE and char tokenizers
    errors         one-sentence user errors, shared by every layer
    data/          token cache, windows, the LightningDataModule
    model/ optim/  the transformer family; AdamW, SGD, Muon and their schedules
    interop/ generation/   Hugging Face layouts; sampling, KV-cache decoding, the prompt policy
    training/      the LightningModule and its callbacks, the one door to Lightning's private names
    run/           a run's bookkeeping: checkpoint files, run folders and locks, interrupts, init_from
    commands/      the `llm_lit` CLI and one file per command
"""
