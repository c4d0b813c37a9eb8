"""The `llm_lit` command line: `cli.py` (LightningCLI's fit/validate/test/predict and the dispatch to
the other commands) and one file per command (chat, plot, accounting, tokenizer, export, import).

May import every other layer; nothing imports it. Kept free of imports here so that a command
loads only what it uses (`llm_lit accounting` never loads Lightning).
"""
