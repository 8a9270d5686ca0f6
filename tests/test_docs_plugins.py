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
        # the TOML samples: the entry point declaration and the server configuration of the sample plugin
        import tomllib

        pyproject, server = (tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL))
        assert pyproject["project"]["entry-points"]["jingtan.plugins"] == {"refill": "jingtan_refill"}
        assert "refill" in server["plugins"]["enabled"]
        ns = module.__dict__
        settings = ns["RefillSettings"].model_validate(server["plugins"]["refill"])
        ns["RefillActionType"]().validate_settings(settings)
        assert settings.review_above_litres == 3
    finally:
        sys.modules.pop(module.__name__, None)


def test_actions_doc_configuration_loads(tmp_path, monkeypatch):
    from jingtan_api.plugins.manager import load_plugins
    from jingtan_api.settings import load_settings

    text = (DOC.parent / "actions.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    config = tmp_path / "jingtan.toml"
    config.write_text(block, encoding="utf-8")
    monkeypatch.setenv("JINGTAN_CONFIG", str(config))
    settings = load_settings()
    host = load_plugins(settings)
    assert sorted(host.action_types) == ["energy_saving", "recycling", "transit"]
    assert host.get("recycling").caps.daily_grams == 20000
