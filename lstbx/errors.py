"""Exceptions of lstbx (which depends on nothing crystallographic, so it has
its own root rather than sgtbx's CrystallographyError)."""


class LeastSquaresError(ValueError):
    """Bad input to, or misuse of, the least-squares machinery."""


class EquationsStateError(LeastSquaresError):
    """A method was called in the wrong phase: equations added after
    ``finalise()``, or results asked for before it."""


class NoDegreesOfFreedomError(LeastSquaresError):
    """A figure that divides by m - p (GoF, scaled covariance) was asked for
    with no more observations (plus restraints) than parameters."""


class NonFiniteError(LeastSquaresError):
    """A NaN or infinity in the observations, weights, model values or
    derivatives, or sums that overflowed.  The iteration drivers treat it,
    when raised while building the equations at a trial point, as a failed
    step."""
