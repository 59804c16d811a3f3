"""The bilingual glossary: every term the course's brief names, found in either language."""

import pytest

from minillm.glossary import TERMS, format_terms, lookup

pytestmark = pytest.mark.foundation

SEED_TERMS = ["模型优化", "迁移学习", "模型剪枝", "模型量化", "知识蒸馏", "硬件加速", "CPU", "GPU", "FPGA", "ASIC",
              "分布式并行计算", "数据并行", "张量并行", "模型并行", "流水线并行", "算力", "显存"]


@pytest.mark.parametrize("term", SEED_TERMS)
def test_every_seed_term_is_there(term):
    assert lookup(term), term


def test_either_language_finds_the_term():
    assert [t.english for t in lookup("剪枝")][0] == "pruning"
    assert any(t.chinese == "模型剪枝" for t in lookup("Pruning"))
    assert lookup("no such thing") == []
    assert len(lookup()) == len(TERMS)


def test_entries_are_complete_and_unique():
    assert len({t.english for t in TERMS}) == len(TERMS)
    for t in TERMS:
        assert t.english and t.chinese and len(t.definition) > 20 and 1 <= t.lesson <= 15


def test_format_names_the_lesson():
    text = format_terms(lookup("知识蒸馏"))
    assert "knowledge distillation / 知识蒸馏  (lesson 05)" in text


def test_the_cli_searches_and_fails_cleanly(capsys):
    from minillm.cli import main

    assert main(["glossary", "剪枝"]) == 0
    assert "pruning / 模型剪枝  (lesson 03)" in capsys.readouterr().out
    assert main(["glossary", "no such term"]) == 1
    assert "no glossary term matches" in capsys.readouterr().err
