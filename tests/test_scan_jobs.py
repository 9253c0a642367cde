"""The one attack-job list (auditor/scan/jobs.py) the scan, its BPDA check and `xray-audit attack` build from."""

from __future__ import annotations

import numpy as np

from auditor.scan.jobs import attack_jobs


def test_jobs_in_attack_then_epsilon_order_with_each_attacks_parameters():
    images, labels = np.zeros((3, 1, 4, 4), np.float32), np.arange(3)
    jobs = attack_jobs(
        ["usmm", "stm", "mifgsm"],
        [4 / 255, 8 / 255],
        images,
        labels,
        attack_params={"mifgsm": {"steps": 3}, "usmm": {"decay": 0.5}},
        style_backend="randconv",
        stm_checkpoint="ckpt",
    )
    assert [j.name for j in jobs] == ["usmm@4", "usmm@8", "stm[randconv]@4", "stm[randconv]@8", "mifgsm@4", "mifgsm@8"]
    assert [(j.attack, j.epsilon) for j in jobs[:2]] == [("usmm", 4 / 255), ("usmm", 8 / 255)]
    usmm = jobs[0].params
    assert sorted(usmm) == ["decay", "epsilon", "mask_pool", "mask_pool_labels"]
    assert usmm["mask_pool"] is images and usmm["mask_pool_labels"] is labels and usmm["decay"] == 0.5
    assert jobs[3].params == {"epsilon": 8 / 255, "style_backend": "randconv", "checkpoint_dir": "ckpt"}
    assert jobs[4].params == {"epsilon": 4 / 255, "steps": 3}  # no USMM or STM options for MI-FGSM
    assert jobs[2].set_id.style_backend == "randconv" and jobs[0].set_id.style_backend is None


def test_no_attack_params_and_no_epsilons():
    assert attack_jobs(["mifgsm"], [], None, None) == []
    assert attack_jobs(["mifgsm"], [16 / 255], None, None)[0].params == {"epsilon": 16 / 255}
