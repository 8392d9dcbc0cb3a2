"""A word-level tokenizer for the toy world, with a chat template, built locally.

One token per word ("▁house", "▁HOUSE") plus punctuation and the chat's special tokens.
Metaspace marks word starts with "▁", so decoding (also vLLM's incremental decoding) puts the
spaces back. Words outside the world become <unk>.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from inocray.models.toy import world

BOS, EOS, PAD, UNK = "<s>", "<|end|>", "<pad>", "<unk>"
ROLES = ("system", "user", "assistant")
SPECIAL = [PAD, BOS, EOS, UNK] + [f"<|{r}|>" for r in ROLES]
PUNCTUATION = [".", ",", "?", "!"]

# Every turn is <|role|>content<|end|>; <|end|> is also EOS, so a reply ends its own turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy world's tokenizer: same vocabulary and ids every time."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + PUNCTUATION + ["▁" + w for w in world.words()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="always"), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.Metaspace(prepend_scheme="always")
    tok.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHAT_TEMPLATE,
        model_max_length=128,
    )
