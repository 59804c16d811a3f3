"""Names and modules that moved say where they went (minillm.moved)."""

import pytest

pytestmark = pytest.mark.foundation


def test_moved_names_say_where_they_went():
    with pytest.raises(ImportError, match="minillm.timing"):
        from minillm.hardware.measure import interleaved_best  # noqa: F401
    with pytest.raises(ImportError, match="minillm.timing"):
        from minillm.train import train_step_seconds  # noqa: F401


def test_a_moved_module_names_its_new_home(monkeypatch):
    from minillm import moved

    monkeypatch.setitem(moved.MOVED_MODULES, "minillm.no_such_old_module", "use minillm.timing instead")
    with pytest.raises(ImportError, match="use minillm.timing instead"):
        import minillm.no_such_old_module  # noqa: F401


@pytest.mark.parametrize(
    "old,new",
    [
        ("minillm.compress.int8_ops", "minillm.compress.int8_linear"),
        ("minillm.compress.explore", "minillm.compress.quant_widget"),
        ("minillm.compress.qmodel", "minillm.compress.model_quant"),
    ],
)
def test_renamed_modules_name_their_successor(old, new):
    import importlib

    with pytest.raises(ImportError, match=new.replace(".", r"\.")):
        importlib.import_module(old)
    importlib.import_module(new)  # and the successor imports
