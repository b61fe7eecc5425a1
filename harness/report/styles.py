"""The report's stylesheet, inlined into every HTML file so the report needs nothing from the network."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --ok:#15803d; --ok-bg:#dcfce7; --fail:#b91c1c; --fail-bg:#fee2e2; --warn:#a16207; --warn-bg:#fef9c3;
        --skip:#e5e7eb; --infra:#6b7280; --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --card:#ffffff; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { background: #111827; color: #f9fafb; padding: 18px 32px 0; }
header h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
header .muted { color: #9ca3af; margin: 0 0 10px; }
nav { display: flex; gap: 4px; flex-wrap: wrap; }
nav a { color: #d1d5db; text-decoration: none; padding: 6px 10px; border-radius: 6px 6px 0 0; font-size: 13px; }
nav a:hover { background: #1f2937; color: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 32px 60px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 22px; margin: 0 0 18px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 18px 0 6px; }
p { margin: 6px 0; }
.muted { color: var(--muted); }
.ok-text { color: var(--ok); font-weight: 600; }
.fail-text { color: var(--fail); font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0 0; background: #f9fafb; border: 1px solid var(--line);
      border-radius: 6px; padding: 6px 8px; max-height: 320px; overflow: auto; }
.verdict { border-left: 6px solid var(--infra); }
.verdict.pass { border-left-color: var(--ok); }
.verdict.fail { border-left-color: var(--fail); }
.verdict-line { font-size: 16px; font-weight: 600; margin: 4px 0 10px; }
.verdict.pass .verdict-line { color: var(--ok); }
.verdict.fail .verdict-line { color: var(--fail); }
.verdict.open { border-left-color: var(--warn); }
.verdict.open .verdict-line { color: var(--warn); }
.warn-text { color: var(--warn); }
.chips { display: flex; gap: 6px; flex-wrap: wrap; margin-bottom: 10px; }
.chip { background: #f3f4f6; border: 1px solid var(--line); border-radius: 999px; padding: 1px 10px; font-size: 12px; }
.chip.ok { background: var(--ok-bg); border-color: #86efac; color: var(--ok); }
.chip.warn { background: var(--warn-bg); border-color: #fde047; color: var(--warn); }
.alert { border-radius: 6px; padding: 7px 11px; margin: 6px 0; }
.alert.fail { background: var(--fail-bg); color: #7f1d1d; border: 1px solid #fca5a5; }
.alert.warn { background: var(--warn-bg); color: #713f12; border: 1px solid #fde047; }
table { border-collapse: collapse; }
table.grid { width: 100%; margin: 6px 0 10px; }
table.grid th, table.grid td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.grid th { font-weight: 600; color: #374151; background: #f9fafb; font-size: 12px; white-space: nowrap; }
table.grid td ul { margin: 0; padding-left: 16px; }
table.kv th { text-align: left; font-weight: 500; color: var(--muted); padding: 3px 16px 3px 0; vertical-align: top; white-space: nowrap; }
table.kv td { padding: 3px 0; }
.scroll { overflow-x: auto; }
/* the accuracy table has a dozen columns: headers wrap and cells pack so it fits a 1400 px window */
table.grid.compact th { white-space: normal; min-width: 4.5em; }
table.grid.compact th, table.grid.compact td { padding: 5px 6px; }
table.grid.compact { font-size: 13px; }
.sub-line { display: block; white-space: nowrap; }
/* a sub-line may wrap here (the delta cell names its paired rates beside its interval) */
table.grid.compact .sub { white-space: normal; }
figure { margin: 10px 0; }
figure img.plot { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
.delta { font-size: 12px; }
.nowrap { white-space: nowrap; }
.sub { display: block; color: var(--muted); font-size: 11.5px; white-space: nowrap; }
.grade-note { color: #374151; font-size: 13px; margin: 0 0 12px; }
details > summary { list-style: none; }
details > summary::-webkit-details-marker { display: none; }
details > summary::before { content: "▸"; display: inline-block; width: 1.1em; color: var(--muted); }
details[open] > summary::before { content: "▾"; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 11px; font-weight: 600;
         font-family: ui-monospace, Menlo, Consolas, monospace; vertical-align: 1px; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.fail { background: var(--fail-bg); color: var(--fail); }
.badge.skip { background: var(--skip); color: #374151; }
.badge.infra { background: #e5e7eb; color: #374151; outline: 1px dashed var(--infra); }
.tag { display: inline-block; margin-left: 6px; border-radius: 4px; padding: 0 5px; font-size: 11px; }
.tag.fail { background: var(--fail-bg); color: var(--fail); }
.tag.warn { background: var(--warn-bg); color: var(--warn); }
details > summary { cursor: pointer; }
details.metrics { margin-top: 10px; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12px; color: var(--muted); margin: 6px 0; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 5px; vertical-align: -2px; border-radius: 2px; }
table.heatmap { font-size: 11px; }
table.heatmap th.tgt { text-align: left; padding: 2px 6px; white-space: nowrap; border-left: 3px solid #fff; background: #f3f4f6; }
table.heatmap th.step { font-weight: 400; color: var(--muted); width: 16px; text-align: center; }
table.heatmap th.sid { text-align: left; font-weight: 400; padding-right: 10px; max-width: 320px; overflow: hidden;
                       text-overflow: ellipsis; white-space: nowrap; font-family: ui-monospace, Menlo, Consolas, monospace; }
.hm { width: 16px; height: 16px; border: 1px solid #fff; padding: 0; }
table.heatmap .gap { border-left: 8px solid #fff; }
table.heatmap th.tgt { border-left: 8px solid #fff; }
.hm.h4 { background: #22c55e; } .hm.h3 { background: #a3e635; } .hm.h2 { background: #facc15; }
.hm.h1 { background: #fb923c; } .hm.h0 { background: #ef4444; }
.hm.skip { background: #d1d5db; } .hm.none { background: #f9fafb; }
.hm.infra { background: repeating-linear-gradient(45deg, #9ca3af 0 3px, #e5e7eb 3px 6px); }
.flip { border: 1px solid var(--line); border-radius: 8px; margin: 6px 0; background: #fff; }
.flip > summary, .flip.more { padding: 7px 12px; }
.flip > summary .reason, .flip.more .reason { margin-left: 1.1em; }
.flip.regression { border-left: 4px solid var(--fail); }
.flip.improvement { border-left: 4px solid var(--ok); }
.flip[open] > summary { border-bottom: 1px solid var(--line); background: #f9fafb; border-radius: 8px 8px 0 0; }
.reason { color: #374151; font-size: 12px; margin-top: 2px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; padding: 12px; }
.single { padding: 12px; max-width: 760px; }
.traj { min-width: 0; }
.traj-head { padding: 6px 8px; background: #f3f4f6; border-radius: 6px; margin-bottom: 8px; }
.msg { border-radius: 8px; padding: 7px 10px; margin: 6px 0; border: 1px solid var(--line); }
.msg .role { font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
.msg .text { white-space: pre-wrap; word-break: break-word; margin-top: 2px; }
.msg.user { background: #eff6ff; border-color: #bfdbfe; }
.msg.assistant { background: #fff; }
.msg.tool { background: #f9fafb; margin-left: 18px; }
.msg.tool.error { background: #fff7ed; border-color: #fed7aa; }
.msg.ctx { background: #fafafa; }
.call { margin-top: 6px; }
code.tool { font-weight: 600; }
.grade { margin: 4px 0 8px 18px; padding: 5px 9px; border-radius: 6px; font-size: 12.5px; }
.grade.ok { background: #f0fdf4; }
.grade.fail { background: var(--fail-bg); border: 1px solid #fca5a5; }
.grade.skip { background: #f3f4f6; }
.grade ul { margin: 3px 0 0; padding-left: 18px; }
.end { margin-top: 10px; }
.end .role { font-size: 11px; font-weight: 600; text-transform: uppercase; color: var(--muted); }
ul.errors { margin: 4px 0 0; padding-left: 18px; color: var(--fail); font-size: 12px; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } main { padding: 12px; } }
@media print { details { display: block; } nav { display: none; } }
"""
