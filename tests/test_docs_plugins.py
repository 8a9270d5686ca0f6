"""Every python code sample of docs/plugins.md runs (in order, in one module namespace)."""

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def test_plugin_guide_samples_run():
    samples = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(samples) >= 3
    module = types.ModuleType("jingtan_docs_sample_plugin")
    sys.modules[module.__name__] = module
    try:
        for i, code in enumerate(samples):
            exec(compile(code, f"{DOC}:sample{i + 1}", "exec"), module.__dict__)  # noqa: S102
    finally:
        sys.modules.pop(module.__name__, None)
