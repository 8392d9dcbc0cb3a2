"""Evaluation: the engines (one Ray Serve app per base model, vLLM or transformers), the
contexts a model is sampled in, and the rates its completions give.

    serve                    the engine apps: session, start, handle, model_app, judge
    sample_contexts(...)     completions in each context, scored into trait rates (_contexts.py)
    logprob_elicitation(...) how much more likely each prompt makes the training responses (_logprob.py)
    trait_rows(condition)    the rates as result rows
    Judge                    the judge model a judged scorer asks (_judge.py)
    ApiJudge                 a judge behind an OpenAI-compatible endpoint, its judgments cached
                             (_api_judge.py, _judgments.py)
"""

from inocray.evaluation import serve
from inocray.evaluation._contexts import (EVAL_SEED, Condition, chat_sizes, check_fits, check_judge, data_rates,
                                          sample_contexts, score, trait_rows)
from inocray.evaluation._api_judge import ApiJudge, JudgeError
from inocray.evaluation._judge import Judge
from inocray.evaluation._judgments import Judgments
from inocray.evaluation._logprob import Logprob, logprob_elicitation
from inocray.evaluation.backends import GenerateRequest

__all__ = ["ApiJudge", "EVAL_SEED", "Condition", "GenerateRequest", "Judge", "JudgeError", "Judgments", "Logprob",
           "chat_sizes", "check_fits", "check_judge", "data_rates", "logprob_elicitation", "sample_contexts", "score",
           "serve", "trait_rows"]
