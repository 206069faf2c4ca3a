"""The pieces pages are made of: escaping by construction, and the graph's layout."""

from __future__ import annotations

from durableflow.definitions import load_definition
from durableflow.model import Connection, NodeDef, WorkflowDef
from durableflow.ui import graph
from durableflow.ui.html import Markup, h, href, html, join, url
from tests.ui.support import edge, noop, review_flow, workflow


def test_text_is_escaped_unless_it_was_built_as_html():
    assert h("<b a=\"1\">'&") == "&lt;b a=&quot;1&quot;&gt;&#x27;&amp;"
    assert h(None) == "" and h(3) == "3"
    assert h(Markup("<i>ok</i>")) == "<i>ok</i>"
    assert html("<p title=\"{}\">{}</p>", '"x"', Markup("<i>y</i>")) == '<p title="&quot;x&quot;"><i>y</i></p>'
    assert Markup("<br>") + "<x>" == "<br>&lt;x&gt;" and "<x>" + Markup("<br>") == "&lt;x&gt;<br>"
    assert join(["<a>", Markup("<b>")], ", ") == "&lt;a&gt;, <b>"
    assert isinstance(html("{}", "x"), Markup) and isinstance(join(["x"]), Markup)


def test_links_keep_an_id_one_segment_and_leave_empty_filters_out():
    assert href("runs", "a/b?c#d") == "/runs/a%2Fb%3Fc%23d"
    assert url("/runs", status="failed", workflow=None, q="", children=False) == "/runs?status=failed"


def layout_of(data: dict) -> graph.Layout:
    return graph.layout(load_definition(data, check_files=False))


def test_layers_follow_the_longest_path_and_a_long_connection_gets_waypoints():
    lay = layout_of(review_flow())
    nodes = [[n for n in row if not n.startswith("\0")] for row in lay.rows]
    assert nodes == [["fetch"], ["check", "audit"], ["transform", "skip_empty"], ["approve"], ["publish"]]
    # audit -> approve skips the third layer: one waypoint there, on audit's side.
    assert [len(w) for w in lay.waypoints.values()] == [1]
    assert lay.rows[2][-1].startswith("\0")


def test_nodes_of_a_layer_never_overlap_and_fit_the_drawing():
    wide = workflow("wide", noop("start"), *[noop(f"n{i}") for i in range(30)], noop("end"),
                    connections=[edge("start", f"n{i}") for i in range(30)] + [edge(f"n{i}", "end") for i in range(30)])
    lay = layout_of(wide)
    for row in lay.rows:
        boxes = sorted(lay.at[n] for n in row)
        for (x1, _, w1), (x2, _, _) in zip(boxes, boxes[1:]):
            assert x1 + w1 < x2
        assert all(0 <= x and x + w <= lay.width for x, _, w in boxes)


def test_a_cycle_stored_by_hand_is_drawn_rather_than_refused():
    defn = WorkflowDef("loop", (NodeDef("a", "Noop"), NodeDef("b", "Noop"), NodeDef("c", "Noop")),
                       (Connection("a", "b"), Connection("b", "c"), Connection("c", "b")))
    svg = graph.svg(defn, {"a": "completed"})
    assert svg.count('class="node ') == 3 and 'class="node s-completed" data-node="a"' in svg


def test_node_colours_come_from_the_drawings_of_durableflow_graph():
    from durableflow.definitions.draw import STATUS_COLOURS
    css = graph.status_css()
    for status, (fill, stroke) in STATUS_COLOURS.items():
        assert f"svg.graph .node.s-{status} rect {{ fill: {fill}; stroke: {stroke}; }}" in css
