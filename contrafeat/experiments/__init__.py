"""Experiments that train: the ablation studies, their cells and tables, and the L2-mask analysis."""
