"""What results show in a notebook (``_repr_html_``) and as tables (``to_frame``).

Rows of a dataset are attacker-controlled text, so every cell of the HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def frame(columns: Mapping[str, object]) -> pd.DataFrame:
    """A pandas DataFrame of ``columns``, or an ImportError naming the package to install.

    References
    ----------
    .. [1] McKinney, "Data Structures for Statistical Computing in Python", SciPy 2010.
       https://doi.org/10.25080/Majora-92bf1922-00a
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_frame needs pandas: pip install pandas") from None
    return pd.DataFrame(columns)


def html_table(title: str, facts: Sequence[tuple[str, object]], header: Sequence[str],
               rows: Sequence[Sequence[object]], note: str = "") -> str:
    """A small HTML block for notebooks: a title, key facts and a table, every text escaped.

    References
    ----------
    .. [1] IPython, "Rich display: _repr_html_".
       https://ipython.readthedocs.io/en/stable/config/integrating.html
    .. [2] OWASP, "Cross Site Scripting Prevention Cheat Sheet" (why every cell is escaped).
       https://cheatsheetseries.owasp.org/cheatsheets/Cross_Site_Scripting_Prevention_Cheat_Sheet.html
    """
    esc = html.escape
    parts = [f"<div class='poisonlab'><b>{esc(title)}</b>",
             "<ul>" + "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in facts) + "</ul>"]
    if rows:
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(_short(c))}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    if note:
        parts.append(f"<p>{esc(note)}</p>")
    parts.append("</div>")
    return "".join(parts)


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
