"""The README's first quick start (the sampler and the loss in a user's own loop), run as written.
The sentence-transformers quick start runs in tests/integrations/test_readme_example.py."""

from markdown_blocks import ROOT, block_with


def test_readme_sampler_and_loss_quick_start_runs():
    example = block_with(ROOT / "README.md", "HybridSampler(")
    namespace = {}
    exec(compile(example, "README quick start 1", "exec"), namespace)
    sampler = namespace["sampler"]
    assert len(sampler) > 0 and namespace["epoch"] == 1
    assert namespace["q"].grad is not None and namespace["q"].grad.abs().sum() > 0


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
