"""Pictures people look at: contact sheets, plots, videos and the HTML index of a run."""
from .plots import plot_curves
from .report import Report
from .sheets import contact_sheet

__all__ = ["Report", "contact_sheet", "plot_curves"]
