"""Encode every line of a JSONL file of strings with Python's sentencepiece; write {"text", "ids", "vocab_size"}."""
import json
import sys

import sentencepiece as spm

model, lines_path, out_path = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model)
with open(lines_path, encoding="utf-8") as f, open(out_path, "w", encoding="utf-8") as out:
    for line in f:
        text = json.loads(line)
        ids = sp.encode(text)
        out.write(json.dumps({"text": text, "ids": ids, "vocab_size": sp.get_piece_size()}, ensure_ascii=False) + "\n")
