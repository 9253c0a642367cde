"""Gradient attacks (MI-FGSM, USMM, STM), the style-blend manipulation, and cached adversarial sets.

Nothing is imported here so that ``import auditor.attacks`` stays light; use
:func:`auditor.attacks.registry.make_attack` and
:func:`auditor.attacks.sets.build_adversarial_set`.
"""
