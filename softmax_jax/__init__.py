"""softmax_jax: softmax regression (multinomial logistic regression) in JAX.

One module per concept; README.md maps them. Importing the package imports
nothing heavy, so that bad input is refused fast.
"""

__version__ = "0.1.0"
