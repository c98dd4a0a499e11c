"""Knowledge of a trained model: object completion on held-out fact templates (issue 13), per
relation and per template family (issue 29; ranking over all objects: ``knowledge_rank``).

A fact counts as known under a template when greedy decoding after the prompt ("The city of
Lyon is in") yields exactly the object's tokens (" France"), i.e. every object token is the
argmax given the prompt and the object tokens before it. The null beside it is the majority
baseline: the accuracy of always answering the most common object of the relation.

    python -m sinkmech.training.knowledge --model DIR --facts data/corpus/ladder/facts.json --out k.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch


@torch.no_grad()
def evaluate_knowledge(
    model: Any, tokenizer: Any, items: Sequence[dict[str, Any]], batch_size: int = 256
) -> list[dict[str, Any]]:
    """Per item: ``correct`` (greedy completion equals the answer) and ``answer_logprob``.

    ``items`` as ``sinkmech.data.facts.eval_items`` writes them (prompt, answer, ...). Every
    prompt is led by BOS, as the suite's prompts are.
    """
    if not items:
        raise ValueError("no knowledge items to evaluate")
    device = next(model.parameters()).device
    bos = tokenizer.bos_token_id
    prompts = tokenizer([it["prompt"] for it in items], add_special_tokens=False)["input_ids"]
    answers = tokenizer([it["answer"] for it in items], add_special_tokens=False)["input_ids"]
    results = []
    was_training = model.training
    model.eval()
    for start in range(0, len(items), batch_size):
        rows = [
            [bos, *p, *a]
            for p, a in zip(
                prompts[start : start + batch_size], answers[start : start + batch_size]
            )
        ]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), bos, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
        logits = model(input_ids=ids.to(device)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        for r, (prompt, answer) in enumerate(
            zip(prompts[start : start + batch_size], answers[start : start + batch_size])
        ):
            positions = torch.arange(
                len(prompt), len(prompt) + len(answer), device=device
            )  # predicts 1+pos
            target = torch.tensor(answer, device=device)
            correct = bool((logits[r, positions].argmax(-1) == target).all())
            logprob = float(logprobs[r, positions, target].sum())
            results.append({**items[start + r], "correct": correct, "answer_logprob": logprob})
    model.train(was_training)
    return results


def summarise(results: Sequence[dict[str, Any]], by_family: bool = False) -> list[dict[str, Any]]:
    """Accuracy per relation (and overall), or per (relation, template family) with
    ``by_family``, beside the majority-object baseline."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in results:
        key = (row["relation"], row["family"]) if by_family else (row["relation"],)
        groups.setdefault(key, []).append(row)
    if not by_family:
        groups[("all",)] = list(results)
    table = []
    for key, rows in groups.items():
        objects = Counter(row["object"] for row in rows)
        marks: dict[int, list[bool]] = {}
        for row in rows:
            marks.setdefault(row["fact"], []).append(bool(row["correct"]))
        table.append(
            {
                **dict(zip(("relation", "family"), key)),
                "items": len(rows),
                "accuracy": sum(r["correct"] for r in rows) / len(rows),
                "majority_baseline": objects.most_common(1)[0][1] / len(rows),
                "facts": len(marks),
                "facts_known_all_templates": sum(all(m) for m in marks.values()),
            }
        )
    return table


def main() -> None:
    """Evaluate one ``save_pretrained`` checkpoint on a ladder corpus's ``facts.json``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--facts", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    items = json.loads(Path(args.facts).read_text())["eval_items"]
    results = evaluate_knowledge(model, tokenizer, items)
    payload = {
        "model": args.model,
        "summary": summarise(results),
        "families": summarise(results, by_family=True),
        "items": results,
    }
    Path(args.out).write_text(json.dumps(payload))
    print(json.dumps(payload["summary"]))


if __name__ == "__main__":
    main()
