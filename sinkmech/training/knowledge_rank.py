"""Knowledge as a ranking over every object of a relation, per template family (issue 29).

Greedy completion (``sinkmech.training.knowledge``) asks for the exact object tokens. Ranking
asks whether the true object is the model's most likely one among ALL objects of the relation
(multi-token names scored by their summed log-probability) and, prior-corrected, whether it
still is once each object's log-probability under content-free prompts of the same template is
subtracted (a model that answers "the United States" to every city gains nothing from it).
Beside both stand the majority-class baseline (always the sample's most common object) and the
share of the most common prediction (how much one answer dominates).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections import Counter
from typing import Any, Sequence

import pandas as pd
import torch

from sinkmech.data.facts import template_prompt

# Subjects that say nothing (Zhao et al. 2021, "Calibrate before use"); their mean probability
# of each object is the template's prior.
CONTENT_FREE = ("N/A", "[MASK]", "")


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 32,
) -> torch.Tensor:
    """[prompt, continuation] summed log-probability of the continuation's tokens (ids) after
    BOS + prompt, for a transformers causal LM. Prompts of one token length run together (up to
    ``batch_size``) and their key-value cache serves every continuation, continuations grouped by
    length: nothing is padded and no prompt is computed twice."""
    device = next(model.parameters()).device
    cache_argument = _cache_argument(model)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    by_prompt: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        by_prompt.setdefault(len(ids), []).append(index)
    by_length: dict[int, list[int]] = {}
    for index, continuation in enumerate(continuations):
        by_length.setdefault(len(continuation), []).append(index)
    firsts = torch.tensor([c[0] for c in continuations], device=device)
    scores = torch.zeros(len(prompts), len(continuations), device=device)
    for group in by_prompt.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            ids = torch.tensor(
                [[tokenizer.bos_token_id, *encoded[i]] for i in chunk], device=device
            )
            out = model(input_ids=ids, use_cache=True)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)[:, firsts]
            scores[chunk] = first
            for length, columns in by_length.items():
                if length > 1:
                    scores[
                        torch.tensor(chunk, device=device)[:, None],
                        torch.tensor(columns, device=device),
                    ] += _rest(
                        model,
                        _cache_of(out),
                        cache_argument,
                        [continuations[c] for c in columns],
                        len(chunk),
                    )
    return scores


def _rest(
    model: Any,
    cache: Any,
    cache_argument: str,
    continuations: list[Sequence[int]],
    n_prompts: int,
):
    """[prompt, continuation] log-probability of every token after the first of equally long
    continuations, given the prompts' cache (passed as the forward's ``cache_argument``)."""
    tokens = torch.tensor(continuations, device=next(model.parameters()).device)
    rows = copy.deepcopy(cache)
    rows.batch_repeat_interleave(len(continuations))  # prompt-major: prompt p, every continuation
    inputs = tokens[:, :-1].repeat(n_prompts, 1)
    logits = model(input_ids=inputs, **{cache_argument: rows}).logits.float()
    target = tokens[:, 1:].repeat(n_prompts, 1)[..., None]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, target)[..., 0].sum(-1)
    return logprobs.view(n_prompts, len(continuations))


def template_prior(
    model: Any, tokenizer: Any, template: str, continuations: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Log of each continuation's mean probability over the ``CONTENT_FREE`` subjects."""
    prompts = [" ".join(template_prompt(template, s).split()) for s in CONTENT_FREE]
    logprobs = continuation_logprobs(model, tokenizer, prompts, continuations)
    return torch.logsumexp(logprobs, dim=0) - math.log(len(CONTENT_FREE))


def rank_objects(
    model: Any,
    tokenizer: Any,
    items: Sequence[dict[str, Any]],
    answers: dict[str, dict[str, str]],
) -> pd.DataFrame:
    """One row per item (``sinkmech.data.facts.eval_items``): the model's top object among all
    objects of the item's relation, raw and prior-corrected, and the true object's raw rank.

    ``answers``: relation -> object -> its answer text (" the United States"), as
    ``sinkmech.data.facts.object_answers`` gives them.
    """
    if not items:
        raise ValueError("no knowledge items to rank")
    encoded = {
        relation: (
            list(table),
            tokenizer(list(table.values()), add_special_tokens=False)["input_ids"],
        )
        for relation, table in answers.items()
    }
    rows = []
    was_training = model.training
    model.eval()
    by_template: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        by_template.setdefault((item["relation"], item["template"]), []).append(item)
    for (relation, template), group in by_template.items():
        objects, ids = encoded[relation]
        prior = template_prior(model, tokenizer, template, ids).cpu()
        scores = continuation_logprobs(model, tokenizer, [it["prompt"] for it in group], ids).cpu()
        for item, score in zip(group, scores):
            corrected = score - prior
            truth = objects.index(item["object"])
            rows.append(
                {
                    **{k: item[k] for k in ("fact", "relation", "family", "template", "subject")},
                    "object": item["object"],
                    "prediction": objects[int(score.argmax())],
                    "prediction_prior_corrected": objects[int(corrected.argmax())],
                    "rank": int((score > score[truth]).sum()) + 1,
                    "objects": len(objects),
                    "answer_logprob": float(score[truth]),
                }
            )
    model.train(was_training)
    return pd.DataFrame(rows)


def family_table(ranked: pd.DataFrame, by: Sequence[str] = ("relation", "family")) -> pd.DataFrame:
    """Per group of ``rank_objects`` rows: top-1 accuracy raw and prior-corrected beside the
    majority-class baseline and chance (1 / objects), and the most common prediction's share."""
    table = []
    for key, group in ranked.groupby(list(by), sort=False):
        predicted = Counter(group.prediction).most_common(1)[0]
        table.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "templates": group.template.nunique(),
                "items": len(group),
                "top1": float((group.prediction == group.object).mean()),
                "top1_prior_corrected": float(
                    (group.prediction_prior_corrected == group.object).mean()
                ),
                "majority_baseline": Counter(group.object).most_common(1)[0][1] / len(group),
                "chance": float((1 / group.objects).mean()),
                "mean_rank": float(group["rank"].mean()),
                "most_common_prediction": predicted[0],
                "most_common_prediction_share": predicted[1] / len(group),
            }
        )
    return pd.DataFrame(table)


def _cache_of(out: Any) -> Any:
    """The key-value cache of a forward's output: ``cache`` from transformers 5.24,
    ``past_key_values`` before (the GPU image has 5.17)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def _cache_argument(model: Any) -> str:
    """The forward's name for a key-value cache, by the same rename."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
