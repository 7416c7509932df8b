"""A tiny XLM-R-architecture model with a tokenizer trained on the fly (no downloads).

``build_tiny_model(directory)`` writes a directory that ``TextEncoder.from_pretrained`` and
``transformers.AutoModel`` load: 2 layers, hidden size 32, a byte-level BPE vocabulary of a few
hundred tokens trained on synthetic multilingual text. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import random
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

_WORDS = (
    "the of and to in is was for on that with as by at from his her it an were which are "
    "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine "
    "el la de que y en los se del las un por con una para es al "
    "le de la et les des en un une du est que dans pour qui sur "
    "question answer passage football river city year team war music science school king "
    "вопрос ответ город река год команда война 问题 答案 城市 河流 年 球队 "
    "ความ คำถาม คำตอบ sorular cevap şehir nehir yıl câu hỏi trả lời thành phố sông năm"
).split()


def synthetic_sentences(count: int = 400, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(4, 14))) + "." for _ in range(count)]


def build_tokenizer(sentences, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("<s>", "</s>")],
    )
    # 512 as XLM-R's tokenizer says (its 514 positions start after the padding index).
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
        model_max_length=512,
    )


def build_tiny_model(directory, *, seed: int = 0, hidden_size: int = 32, layers: int = 2,
                     sentences=None, vocab_size: int = 400):
    """Write a tiny XLM-R model + tokenizer to ``directory`` and return its path.

    The tokenizer is trained on ``sentences`` (default: synthetic text); training it on the
    data a test learns from gives the model real words to work with."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer = build_tokenizer(sentences or synthetic_sentences(seed=seed), vocab_size)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=520,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
