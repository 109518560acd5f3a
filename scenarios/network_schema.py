"""The scenario's `network:` block: who sees whom, and who is shown what their neighbours did.

One networkx generator (or an edge list file) over the run's participants, built from the run
seed (agents/network.py). `show` names the between-subject condition that sees the neighbours'
previous-round answers; `summarise` the questions whose answers are summarised (default: every
question with options). Rules that need the rest of the scenario live in scenarios/checks.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from scenarios.questions import Identifier, Strict

GENERATORS = ("erdos_renyi", "watts_strogatz", "barabasi_albert", "stochastic_block", "edge_list")
Probability = Annotated[float, Field(ge=0, le=1)]


class SocialSwitch(Strict):
    """Participants whose condition `factor` is `level` see their neighbours; the others do not."""

    factor: Identifier
    level: str = Field(min_length=1)


class Network(Strict):
    """A graph over the participants; each generator takes only its own parameters."""

    generator: Literal["erdos_renyi", "watts_strogatz", "barabasi_albert", "stochastic_block",
                       "edge_list"]
    p: Probability | None = None           # erdos_renyi: edge probability; watts_strogatz: rewiring
    mean_degree: float | None = Field(default=None, gt=0)  # erdos_renyi, instead of p
    k: int | None = Field(default=None, ge=2)              # watts_strogatz: ring neighbours (even)
    m: int | None = Field(default=None, ge=1)              # barabasi_albert: edges per new node
    by: Identifier | None = None           # stochastic_block: a demographic or condition name
    p_in: Probability | None = None        # stochastic_block: within a block
    p_out: Probability | None = None       # stochastic_block: between blocks
    edges: str | None = Field(default=None, min_length=1)  # edge_list: CSV of source,target ids
    show: SocialSwitch | None = None
    summarise: list[Identifier] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _parameters(self) -> Network:
        needs, allowed = _PARAMETERS[self.generator]
        given = {name for name in _ALL if getattr(self, name) is not None}
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"generator {self.generator} takes {_names(allowed)}; "
                             f"remove {', '.join(extra)}")
        for group in needs:
            if not given & group:
                raise ValueError(f"generator {self.generator} needs {' or '.join(sorted(group))}")
            if len(given & group) > 1:
                raise ValueError(f"give one of {', '.join(sorted(group))}, not both")
        if self.generator == "watts_strogatz" and self.k is not None and self.k % 2:
            raise ValueError(f"watts_strogatz needs an even k (each node's ring neighbours, half "
                             f"on each side); got {self.k}")
        return self


_ALL = ("p", "mean_degree", "k", "m", "by", "p_in", "p_out", "edges")
# Per generator: the groups of which exactly one must be given, and every parameter it takes.
_PARAMETERS: dict[str, tuple[list[set[str]], set[str]]] = {
    "erdos_renyi": ([{"p", "mean_degree"}], {"p", "mean_degree"}),
    "watts_strogatz": ([{"k"}, {"p"}], {"k", "p"}),
    "barabasi_albert": ([{"m"}], {"m"}),
    "stochastic_block": ([{"by"}, {"p_in"}, {"p_out"}], {"by", "p_in", "p_out"}),
    "edge_list": ([{"edges"}], {"edges"}),
}


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "no parameters"
