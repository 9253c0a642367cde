"""MI-FGSM: the plain momentum iterative attack (Dong et al., CVPR 2018, arXiv:1710.06081).

The shared loop in :mod:`auditor.attacks.base` already is MI-FGSM; this class only
names it. Official arguments: epsilon 16/255, alpha epsilon/T, T 10, decay 1.0, L-inf.
Cost: one surrogate forward + backward per image and iteration.
"""

from __future__ import annotations

from auditor.attacks.base import GradientAttack


class MIFGSM(GradientAttack):
    """MI-FGSM (transform = identity). See :class:`~auditor.attacks.base.GradientAttack` for the arguments.

    Example::

        x_adv = MIFGSM(model, epsilon=8 / 255)(x, y, seed=0)
    """

    name = "mifgsm"
    display_name = "MI-FGSM"
