"""A sub-sampled, unbiased estimate of eq. 4's mutual-information term.

The exact minibatch estimate of the last sum of eq. 4 runs every private encoder on every
row of the minibatch, so one training row costs O(K) encoder passes. Here each private
encoder k instead sees ``m`` rows drawn from the minibatch's *other* populations, with
probabilities proportional to the exact estimate's weights (:func:`mi_weights`: eq. 4's
``1 / (N - n_k)`` times the ``n_j / m_j`` that a balanced minibatch row stands for). With
those probabilities and the scale ``W_k / m`` (``W_k`` the sum of encoder k's weights),

    E[ (W_k / m) sum_s KL_k(x_{i_s}) ] = sum_i w_ki KL_k(x_i),

the exact minibatch estimate, which is itself unbiased for eq. 4. So the sub-sampled term
is unbiased for eq. 4 at a cost of ``K * m`` encoder rows per step, independent of the
number of rows in the step.
"""

import torch

from sklearn_cpvae._objective import mi_weights


def draw_off_population(populations, batch_counts, pop_sizes, m, generator):
    """Rows of the minibatch for each private encoder's MI term, and their weights.

    Parameters
    ----------
    populations : long tensor (n,)
        Population of each minibatch row.
    batch_counts, pop_sizes : float tensor (K,)
        Rows of each population in the minibatch (``m_k``) and in the data (``n_k``).
    m : int
        Draws per private encoder (with replacement).
    generator : torch.Generator
        On the device of ``populations``.

    Returns
    -------
    rows : long tensor (K, m)
        Minibatch positions; row ``rows[k, s]`` is never of population k.
    weight : tensor (K, m)
        ``W_k / m`` for every draw of encoder k: ``sum(weight * KL_k(x[rows]))`` is an
        unbiased estimate of ``sum(mi_weights(...) * KL)`` (see the module docstring).
    """
    w = mi_weights(populations, batch_counts, pop_sizes)  # (K, n), zero on own rows
    total = w.sum(1, keepdim=True)  # W_k
    # Inverse-CDF sampling: one cumsum and a binary search, no per-k Python work.
    cdf = torch.cumsum(w, 1) / total
    u = torch.rand((w.shape[0], m), generator=generator, device=w.device, dtype=w.dtype)
    rows = torch.searchsorted(cdf, u, right=True).clamp_(max=w.shape[1] - 1)
    # Rounding can leave the cdf's last entries just under 1 with a zero-weight row at the
    # end (a row of population k itself); a draw landing there would get weight 0 in the
    # exact sum, so it is moved to the last row that has weight.
    last = (w > 0).to(w.dtype).cumsum(1).argmax(1, keepdim=True)
    rows = torch.minimum(rows, last)
    return rows, (total / m).expand(-1, m)
