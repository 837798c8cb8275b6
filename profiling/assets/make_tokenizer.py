"""Write the tiny offline CLIP-style BPE tokenizer (vocab.json, merges.txt) that the profiler uses without the hub.
Generated, not downloaded: a byte-level alphabet (as CLIP's BPE), its end-of-word forms, a few merges, 2 specials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: A handful of English merges so that common words become fewer tokens (why: exercise the BPE path, not cost).
MERGES = ["t h", "th e</w>", "a n", "i n", "o n</w>", "e r", "an d</w>", "o f</w>", "i n</w>"]


def byte_alphabet() -> list[str]:
    """CLIP's (GPT-2's) reversible byte-to-unicode table, so every UTF-8 input is representable."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    )
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def build_vocab() -> dict[str, int]:
    """Alphabet, end-of-word alphabet, merged tokens, then the two specials (CLIP's order)."""
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + [m.replace(" ", "") for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def main(out_dir: Path = HERE) -> None:
    vocab = build_vocab()
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(MERGES)} merges to {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
