"""Crafted sentence-transformers model folders (a folder downloaded from anywhere): no module is
imported by name, no file outside the folder is read, no pickled code runs, and a malformed
file is one ValueError naming it."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys

import pytest

from hbt_fast.models import TextEncoder
from hbt_fast.models.head import ACTIVATIONS


@pytest.fixture(scope="module")
def saved_folder(tiny_model_dir, tmp_path_factory):
    """A model folder with Transformer, Pooling, a Dense (the LaBSE pooler) and Normalize."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    TextEncoder.from_pretrained(tiny_model_dir, preset="labse", show_progress=False).save(folder)
    (folder / "hbt_encoder.json").unlink()  # only the sentence-transformers files speak
    return folder


@pytest.fixture
def folder(saved_folder, tmp_path):
    return shutil.copytree(saved_folder, tmp_path / "model")


def edit_json(path, change):
    value = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(value)), encoding="utf-8")


def set_module_path(kind, new_path):
    def change(modules):
        for entry in modules:
            if entry["type"].endswith(kind):
                entry["path"] = new_path
        return modules
    return change


def test_the_saved_folder_loads(folder):
    encoder = TextEncoder.from_pretrained(folder, show_progress=False)
    assert len(encoder.head.dense) == 1 and encoder.head.dense[0].activation_name.endswith("Tanh")


@pytest.mark.parametrize("activation", ["torch.nn.modules.activation.GELU", "torch.nn.Tanh",
                                        "torch.nn.modules.linear.Identity"])
def test_sentence_transformers_activation_names_load(folder, activation):
    edit_json(folder / "2_Dense" / "config.json", lambda c: {**c, "activation_function": activation})
    encoder = TextEncoder.from_pretrained(folder, show_progress=False)
    assert type(encoder.head.dense[0].activation) is ACTIVATIONS[activation]


def test_an_activation_outside_the_allow_list_is_never_imported(folder):
    # In a fresh process: importing the module is the harm (its import runs its code).
    target = "torch.testing._internal.common_utils"
    edit_json(folder / "2_Dense" / "config.json",
              lambda c: {**c, "activation_function": f"{target}.TestCase"})
    script = (
        "import sys\nfrom hbt_fast.models import TextEncoder\n"
        f"try:\n    TextEncoder.from_pretrained({str(folder)!r})\n"
        "except ValueError as error:\n    print('ERROR', error)\n"
        f"print('IMPORTED', {target!r} in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert "IMPORTED False" in result.stdout, result.stdout + result.stderr
    assert f"ERROR {folder / '2_Dense' / 'config.json'}: activation_function" in result.stdout


@pytest.mark.parametrize("activation", [
    "torch.nn.modules.activation.MultiheadAttention",  # needs arguments
    "torch.nn.modules.activation.PReLU",  # holds a weight the folder's Dense weights lack
    "torch.nn.modules.linear.Linear", "os.system", "Tanh", 3,
])
def test_other_activations_are_refused_naming_the_file(folder, activation):
    edit_json(folder / "2_Dense" / "config.json", lambda c: {**c, "activation_function": activation})
    with pytest.raises(ValueError, match=r"2_Dense[/\\]config\.json: 'activation_function'|"
                                         r"2_Dense[/\\]config\.json: activation_function"):
        TextEncoder.from_pretrained(folder)


@pytest.mark.parametrize("kind, path", [
    ("Dense", "../outside"), ("Dense", "2_Dense/../../outside"), ("Transformer", "../outside"),
    ("Dense", "/tmp"), ("Pooling", "..\\outside"), ("Dense", "2_Dense\0"),
])
def test_module_paths_must_stay_inside_the_folder(folder, kind, path):
    shutil.copytree(folder / "2_Dense", folder.parent / "outside")
    edit_json(folder / "modules.json", set_module_path(kind, path))
    with pytest.raises(ValueError, match=re.escape(
            f"modules.json: module path {path!r} leads outside the model folder")):
        TextEncoder.from_pretrained(folder)


def test_a_link_leading_out_of_the_folder_is_refused(folder):
    shutil.copytree(folder / "2_Dense", folder.parent / "outside")
    os.symlink(folder.parent / "outside", folder / "3_Linked")
    edit_json(folder / "modules.json", set_module_path("Dense", "3_Linked"))
    with pytest.raises(ValueError, match=r"module path '3_Linked' leads outside the model folder"):
        TextEncoder.from_pretrained(folder)


def _replace(path, text):
    def write(folder):
        (folder / path).write_bytes(text if isinstance(text, bytes) else text.encode())
    return write


def _edit(path, change):
    return lambda folder: edit_json(folder / path, change)


def _without(key):
    return lambda config: {k: v for k, v in config.items() if k != key}


@pytest.mark.parametrize("damage, file, message", [
    (_replace("modules.json", "{}"), "modules.json", "expected a JSON list"),
    (_replace("modules.json", '[{"path": ""}]'), "modules.json", "module 0 must be an object"),
    (_replace("modules.json", '[{"type": 5}]'), "modules.json", "module 0 must be an object"),
    (_replace("modules.json", '["x"]'), "modules.json", "module 0 must be an object"),
    (_edit("modules.json", set_module_path("Dense", 7)), "modules.json", "'path' must be a string"),
    (_replace("modules.json", b'[\n\xff]'), "modules.json", "2: not valid UTF-8"),
    (_replace("modules.json", '[{"idx": 0,\n "name": }]'), "modules.json", "2: not valid JSON"),
    (_edit("2_Dense/config.json", _without("in_features")), "2_Dense/config.json",
     "'in_features' must be a positive integer"),
    (_edit("2_Dense/config.json", lambda c: {**c, "out_features": "16"}), "2_Dense/config.json",
     "'out_features' must be int"),
    (_edit("2_Dense/config.json", lambda c: {**c, "in_features": True}), "2_Dense/config.json",
     "'in_features' must be int"),
    (_edit("2_Dense/config.json", lambda c: {**c, "bias": "yes"}), "2_Dense/config.json",
     "'bias' must be bool"),
    (_edit("2_Dense/config.json", lambda c: {**c, "in_features": 31}), "2_Dense/model.safetensors",
     "linear.weight has shape [32, 32], but"),
    # nothing is allocated from config.json alone: a 10**12 x 10**12 layer is not attempted
    (_edit("2_Dense/config.json", lambda c: {**c, "in_features": 10**12, "out_features": 10**12}),
     "2_Dense/model.safetensors", "linear.weight has shape [32, 32], but"),
    (_edit("2_Dense/config.json", lambda c: {**c, "bias": False}), "2_Dense/model.safetensors",
     "does not match"),
    (_replace("2_Dense/config.json", "[1, 2]"), "2_Dense/config.json", "expected a JSON object"),
    (_replace("2_Dense/config.json", "{"), "2_Dense/config.json", "not valid JSON"),
    (_replace("2_Dense/model.safetensors", b"\x00" * 20), "2_Dense/model.safetensors",
     "not readable Dense weights"),
    (_replace("1_Pooling/config.json", "[]"), "1_Pooling/config.json", "expected a JSON object"),
    (_edit("1_Pooling/config.json", lambda c: {**c, "pooling_mode_cls_token": "yes"}),
     "1_Pooling/config.json", "'pooling_mode_cls_token' must be bool"),
    (_edit("1_Pooling/config.json", lambda c: {**c, "pooling_mode": 3}),
     "1_Pooling/config.json", "'pooling_mode' must be str or list"),
    (_edit("sentence_bert_config.json", lambda c: {**c, "max_seq_length": "long"}),
     "sentence_bert_config.json", "'max_seq_length' must be int"),
    (_edit("config_sentence_transformers.json", lambda c: {**c, "prompts": ["q"]}),
     "config_sentence_transformers.json", "'prompts' must be dict"),
    (_edit("config_sentence_transformers.json", lambda c: {**c, "prompts": {"query": 1}}),
     "config_sentence_transformers.json", "prompt 'query' must be a string"),
    (_replace("hbt_encoder.json", "[]"), "hbt_encoder.json", "expected a JSON object"),
    (_replace("hbt_encoder.json", '{"max_query_length": "64"}'), "hbt_encoder.json",
     "max_query_length must be an integer"),
    (_replace("hbt_encoder.json", '{"pooling": "sum"}'), "hbt_encoder.json", "pooling must be one of"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_malformed_files_give_one_error_naming_the_file(folder, damage, file, message):
    damage(folder)
    with pytest.raises(ValueError) as error:
        TextEncoder.from_pretrained(folder)
    assert str(error.value).startswith(str(folder / file)), str(error.value)
    assert message in str(error.value)


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_dense_weights_never_run_code(folder, tmp_path):
    marker = tmp_path / "payload-ran"
    (folder / "2_Dense" / "model.safetensors").unlink()
    with open(folder / "2_Dense" / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"linear.weight": Payload(marker)}, handle, protocol=2)
    with pytest.raises(ValueError, match=r"2_Dense[/\\]pytorch_model\.bin: not readable Dense weights"):
        TextEncoder.from_pretrained(folder)
    assert not marker.exists()


def test_pickled_transformer_weights_never_run_code(folder, tmp_path):
    marker = tmp_path / "payload-ran"
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"embeddings.word_embeddings.weight": Payload(marker)}, handle, protocol=2)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: not readable transformer weights"):
        TextEncoder.from_pretrained(folder)
    assert not marker.exists()


def test_damaged_transformer_weights_name_the_file(folder):
    (folder / "model.safetensors").write_bytes(b"\x00" * 30)
    with pytest.raises(ValueError, match=r"model\.safetensors: not readable transformer weights"):
        TextEncoder.from_pretrained(folder)


def test_tensor_only_pickled_dense_weights_still_load(folder):
    import torch
    from safetensors.torch import load_file

    state = load_file(str(folder / "2_Dense" / "model.safetensors"))
    (folder / "2_Dense" / "model.safetensors").unlink()
    torch.save(state, folder / "2_Dense" / "pytorch_model.bin")
    encoder = TextEncoder.from_pretrained(folder, show_progress=False)
    assert torch.equal(encoder.head.dense[0].linear.weight, state["linear.weight"])
