"""Uninformed Students: e and v are Eqs. 7–8, the teacher's losses are the paper's, the teacher is cached and falls back
to λ_k = 0, λ_m = 1 without ResNet-18's weights (and says so), the score statistics come from validation normals only,
and a tiny run on data with masks writes every artefact."""

import json

import pytest
import torch
from hydra.utils import instantiate
from torchvision.models import resnet18

from adrun.errors import UserError
from adrun.methods.students import Students, predictive_variance, regression_error
from adrun.methods.teacher import (
    TeacherSettings,
    compactness_loss,
    obtain_teacher,
    train_teacher,
    triplet_loss,
)
from adrun.nets.patch import PatchNet
from tests.conftest import METRICS_WITH_MASKS, composed, run, tiny

TINY = tiny("students")


def test_error_and_variance_are_equations_7_and_8_on_hand_made_tensors():
    # M = 2 students, one pixel, d = 2: S_1 = (1, 0), S_2 = (3, 2), standardised teacher t = (0, 1)
    students = torch.tensor([[1.0, 0.0], [3.0, 2.0]]).view(2, 1, 2, 1, 1)
    target = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    # mean = (2, 1): e = ‖(2, 1) − (0, 1)‖² = 4; v = (1 + 13)/2 − ‖(2, 1)‖² = 7 − 5 = 2
    assert regression_error(students, target).item() == pytest.approx(4.0)
    assert predictive_variance(students).item() == pytest.approx(2.0)
    generator = torch.Generator().manual_seed(0)
    many = torch.randn(5, 3, 128, 4, 4, generator=generator)
    v = predictive_variance(many)
    centred = many - many.mean(0)
    assert (v >= 0).all() and torch.allclose(v, centred.pow(2).sum(2).mean(0), atol=1e-4)  # trace of the covariance
    assert predictive_variance(many[:1].expand(4, -1, -1, -1, -1)).abs().max() < 1e-4  # agreeing students: v = 0


def test_teacher_losses_on_hand_made_descriptors():
    a = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])  # both dimensions perfectly correlated
    assert compactness_loss(a).item() == pytest.approx(2.0)  # c_12 + c_21
    b = torch.tensor([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])
    assert compactness_loss(b).item() == pytest.approx(-2.0)
    assert compactness_loss(b, "squared").item() == pytest.approx(2.0)  # (−1)² + (−1)²
    generator = torch.Generator().manual_seed(0)
    independent = torch.randn(4096, 3, generator=generator)  # nearly uncorrelated: both forms near 0
    assert abs(compactness_loss(independent).item()) < 0.1 and compactness_loss(independent, "squared").item() < 0.01
    anchor, positive = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])  # δ⁺ = 1
    negative = torch.tensor([[0.0, 2.0]])  # ‖a − n‖² = 4, ‖p − n‖² = 5 → δ⁻ = 4
    assert triplet_loss(anchor, positive, negative, margin=1.0).item() == pytest.approx(0.0)  # max(0, 1 + 1 − 4)
    assert triplet_loss(anchor, positive, negative, margin=3.5).item() == pytest.approx(0.5)


def small_settings(**kwargs) -> TeacherSettings:
    return TeacherSettings(**{"patch_size": 17, "iterations": 2, "batch_size": 4} | kwargs)


def source_images() -> torch.Tensor:
    return torch.randint(0, 256, (3, 1, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_without_resnet_weights_the_teacher_trains_with_metric_learning_and_the_run_says_so(capsys):
    _, facts = obtain_teacher(1, source_images(), small_settings(), "none", None, torch.device("cpu"))
    assert facts["distillation"] is False and facts["lambda_k"] == 0.0 and facts["lambda_m"] == 1.0
    assert set(facts["final_losses"]) == {"metric", "compactness"}
    lines = [line for line in capsys.readouterr().out.splitlines() if "no knowledge distillation" in line]
    assert len(lines) == 1 and "λ_k=0, λ_m=1" in lines[0]


def test_with_resnet_weights_the_teacher_distils(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), weights)  # random weights: the code path, not ImageNet's features
    _, facts = obtain_teacher(1, source_images(), small_settings(kd_input_size=32), str(weights), None, "cpu")
    assert facts["distillation"] is True and facts["lambda_k"] == 1.0 and facts["lambda_m"] == 0.0
    assert set(facts["final_losses"]) == {"distillation", "compactness"} and facts["resnet18"] == str(weights)


def test_missing_resnet_path_is_a_one_line_error():
    with pytest.raises(UserError, match="no such file"):
        obtain_teacher(1, source_images(), small_settings(), "/nowhere/resnet18.pth", None, "cpu")


def test_the_trained_teacher_is_cached_and_reused_by_the_same_settings_only(tmp_path, capsys):
    images, cpu = source_images(), torch.device("cpu")
    first, facts = obtain_teacher(1, images, small_settings(), "none", str(tmp_path), cpu)
    assert facts["trained_now"] and len(list(tmp_path.glob("teacher_p17_*.pt"))) == 1
    again, facts_again = obtain_teacher(1, images, small_settings(), "none", str(tmp_path), cpu)
    assert not facts_again["trained_now"] and facts_again["file"] == facts["file"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    assert "loaded from" in capsys.readouterr().out
    obtain_teacher(1, images, small_settings(iterations=3), "none", str(tmp_path), cpu)
    obtain_teacher(1, images[:2], small_settings(), "none", str(tmp_path), cpu)
    assert len(list(tmp_path.glob("teacher_p17_*.pt"))) == 3  # other settings, other source images: other teachers


def test_teacher_training_changes_the_network_and_is_seeded():
    def trained(seed):
        torch.manual_seed(0)
        net = PatchNet(17, 1)
        train_teacher(net, source_images(), small_settings(seed=seed), None)
        return net.state_dict()

    torch.manual_seed(0)
    untouched = PatchNet(17, 1).state_dict()
    a, b, c = trained(1), trained(1), trained(2)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    assert not all(torch.equal(a[k], untouched[k]) for k in a)


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"method\.patch_sizes must be one of"):
        Students(16, 1, patch_sizes=[31])
    with pytest.raises(UserError, match=r"method\.image_score must be one of"):
        Students(16, 1, image_score="median")
    with pytest.raises(UserError, match="val_fraction"):
        run(tmp_path / "run", *TINY, "data.val_fraction=0", "method.teacher_resnet18=none")


@pytest.fixture(scope="module")
def tiny_students(tmp_path_factory):
    """One tiny run on synthetic data with masks (16 px, p = 17, M = 2): (results, run dir, config)."""
    tmp = tmp_path_factory.mktemp("students")
    overrides = (*TINY, f"method.teacher_cache={tmp}/teachers", "method.teacher_resnet18=none")
    return run(tmp / "run", *overrides), tmp / "run", overrides


def test_a_tiny_run_writes_pixel_metrics_and_how_the_teacher_was_made(tiny_students):
    results, run_dir, _ = tiny_students
    saved = json.loads((run_dir / "results.json").read_text())
    variants = {"image_auroc_mean", "image_auroc_error", "image_auroc_variance"}
    assert set(saved["metrics"]) == METRICS_WITH_MASKS | variants
    assert saved == json.loads(json.dumps(results, default=str))
    assert all(0 <= value <= 1 for value in saved["metrics"].values())
    (teacher,) = saved["method_notes"]["teachers"]
    assert teacher["patch_size"] == 17 and teacher["distillation"] is False and teacher["lambda_m"] == 1.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "scores.csv").is_file()


def test_a_second_run_with_the_same_settings_loads_the_cached_teacher_and_scores_the_same(tiny_students, tmp_path):
    results, _, overrides = tiny_students
    again = run(tmp_path / "again", *overrides)
    (first,), (second,) = results["method_notes"]["teachers"], again["method_notes"]["teachers"]
    assert first["trained_now"] and not second["trained_now"] and second["file"] == first["file"]
    assert again["metrics"] == results["metrics"]


def test_score_statistics_come_from_the_validation_normals(tiny_students):
    """The checkpoint's (mean, std) of e and v equal those over every pixel of the validation set, recomputed here,
    and differ from those over the test normals."""
    _, run_dir, overrides = tiny_students
    module = Students.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt").eval()
    datamodule = instantiate(composed(*overrides).data)
    datamodule.setup("fit")

    def moments(images):
        error, variance = module.error_and_variance(0, images)
        return torch.stack([torch.stack([x.double().mean(), x.double().std(correction=0)]) for x in (error, variance)])

    val = datamodule.val_set.__getitems__(range(len(datamodule.val_set)))["image"]
    stored = torch.stack([module.error_stats[0], module.variance_stats[0]]).double()
    assert torch.allclose(stored, moments(val), rtol=1e-4)
    test = datamodule.test_set.__getitems__(range(len(datamodule.test_set)))
    assert not torch.allclose(stored, moments(test["image"][test["label"] == 0]), rtol=1e-2)


def test_score_map_is_the_standardised_sum_averaged_over_scales_and_the_image_score_its_maximum():
    torch.manual_seed(0)
    module = Students(24, 1, patch_sizes=[17, 33], students=2).eval()
    module.error_stats.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    module.variance_stats.copy_(torch.tensor([[0.5, 0.25], [0.1, 2.0]]))
    images = torch.rand(2, 1, 24, 24) * 2 - 1
    scored = module.score({"image": images})
    scores, maps = scored.image, scored.map
    expected = torch.zeros(2, 24, 24)
    stats = zip(module.error_stats, module.variance_stats, strict=True)
    for scale, ((e_mean, e_std), (v_mean, v_std)) in enumerate(stats):
        e, v = module.error_and_variance(scale, images)
        expected += ((e - e_mean) / e_std + (v - v_mean) / v_std) / 2
    assert maps.shape == (2, 1, 24, 24) and torch.allclose(maps[:, 0], expected, atol=1e-5)
    assert torch.equal(scores, maps.amax((1, 2, 3)))
    scored = module.score({"image": images})
    _, _, variants = scored.image, scored.map, scored.variants
    assert torch.allclose(variants["mean"], maps.mean((1, 2, 3)))
    error_map, variance_map = module.standardised_maps(images)
    assert torch.allclose(error_map + variance_map, maps) and torch.equal(variants["error"], error_map.amax((1, 2, 3)))
    module.hparams.image_score = "mean"
    assert torch.allclose(module.score({"image": images}).image, maps.mean((1, 2, 3)))
