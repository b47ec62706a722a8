"""The world's CLIP tokenizer: every caption word is one token, like real CLIP's common words.

Real CLIP BPE gives "dog" or "sks" a token of their own; a character-level vocabulary would make the
identifier three tokens and the prompts long. Here each word of the captions, plus the usual rare
identifiers, is built by left-to-right BPE merges; single characters remain so that any other text
still tokenizes (as characters), never fails.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from .objects import CLASS_NOUNS, PALETTE, PATTERN_WORDS, PROPERTIES
from .scenes import CONTEXTS

# Identifiers people use for DreamBooth subjects; none occurs in a pretraining caption.
IDENTIFIERS = ("sks", "zwx", "ohwx", "xjy")
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def caption_words() -> list[str]:
    """Every word a pretraining caption can contain, in a fixed order."""
    text = " ".join(
        [
            "a an photo of with parts",
            *CLASS_NOUNS,
            *PROPERTIES,
            *PALETTE,
            *PATTERN_WORDS.values(),
            *(c.phrase for c in CONTEXTS),
        ]
    )
    return list(dict.fromkeys(text.lower().split()))


def write_vocabulary(folder: str | Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` for a ``CLIPTokenizer`` into ``folder``.

    The merges come from BPE training on the word list until every word is one token: applying a
    trained merge list in rank order reproduces the training segmentation, so no merge can split another
    word (hand-made merge lists can).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = list(dict.fromkeys(caption_words() + list(IDENTIFIERS)))
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(words, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab = dict(model["vocab"])
    for ch in alphabet:  # every character also word-final, so any text tokenizes
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges))
    return vocab_file, merges_file


def build_tokenizer(folder: str | Path, max_length: int = 16):
    """A ``CLIPTokenizer`` over the world's words; ``max_length`` tokens per prompt (captions take ≤ 18)."""
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_vocabulary(folder)
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_length)
    for word in list(caption_words()) + list(IDENTIFIERS):
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise AssertionError(f"toy-world vocabulary: {word!r} tokenizes to {ids}")
    return tokenizer
