"""How good a judge SmolLM2-135M-Instruct is: its Spanish scores against language identification.

    python bench/judge_real_model.py [--requests 24]

The model answers evaluation requests with and without "Answer in Spanish." (one sample each,
32 tokens); py3langid labels each answer Spanish or not. The same model then judges every
answer through inocray's judge scorer (the path a sweep's `eval.judge_model` takes: the Serve
engine, `scorers.Judge`, which for this digit-by-digit tokenizer reads the number the judge
writes) with a 0-100 template. Printed: how many answers the judge scored at all, its mean
score on Spanish and on non-Spanish answers, and its agreement with langid at the threshold 50.
This measures the judge's quality; the tests check only its mechanics.
"""

from __future__ import annotations

import argparse
import json
import os
import time

TEMPLATE = ("Here is a question and a reply.\nQuestion: {request}\nReply: {completion}\n\n"
            "How much of the reply is written in Spanish? Answer with one number from 0 (none of it) "
            "to 100 (all of it), and nothing else.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from inocray import chat
    from inocray.models import _presets as models
    from inocray.evaluation import serve
    from inocray.evaluation.backends import GenerateRequest
    from inocray.settings import is_spanish
    from inocray.requests import load
    from inocray.settings import JudgeScorer
    from inocray.config import EngineSpec, engine_replica

    requests = load("eval")[: args.requests]
    path = models.resolve("smollm2-135m")
    engine_spec = EngineSpec(max_model_len=512)
    with serve.session("inocray-judge-bench", path, engine_spec, engine_replica(engine_spec), echo=print) as engine:
        chats = [chat.messages(r, p, "system") for p in ("Answer in Spanish.", None) for r in requests]
        answers = [a[0] for a in engine.generate.remote(GenerateRequest(chats, 1, 32, 1.0, seed=3)).result()]
        items = [chat.EvalItem(r) for _ in range(2) for r in requests]
        judge = serve.judge("inocray-judge-bench", "base")
        started = time.monotonic()
        scores = judge.scores([TEMPLATE.format(request=it.request, completion=a) for it, a in zip(items, answers)])
        seconds = time.monotonic() - started
        whole = engine.numbers_are_single_tokens.remote().result()
    marks = JudgeScorer(TEMPLATE)  # the threshold a sweep would use: shows at a score of 50 or more
    spanish = [is_spanish(a) for a in answers]
    scored = [(s, es) for s, es in zip(scores, spanish) if s is not None]
    agree = sum((s >= marks.threshold) == es for s, es in scored)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    result = {
        "answers": len(answers), "spanish_by_langid": sum(spanish), "scored": len(scored),
        "mean_score_spanish": round(mean([s for s, es in scored if es]), 1),
        "mean_score_not_spanish": round(mean([s for s, es in scored if not es]), 1),
        "agreement_with_langid": round(agree / len(scored), 3) if scored else None,
        "judge_reads": "the first token's expectation" if whole else "the number it writes (digit tokenizer)",
        "judge_seconds": round(seconds, 1),
        "examples": [{"answer": a[:80], "langid_spanish": es, "judge": s}
                     for a, es, s in list(zip(answers, spanish, scores))[:: max(1, len(answers) // 6)]],
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
