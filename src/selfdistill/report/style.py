"""The report's stylesheet (inline in report.html: the page needs no other file)."""

__all__ = ["CSS"]

CSS = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #dde1e7; --head: #f2f4f7; --accent: #1f4e8c; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1240px; padding: 1.2em 2em 4em; }
header { border-bottom: 3px solid var(--accent); margin-bottom: .8em; padding-bottom: .4em; }
h1 { font-size: 1.55em; margin: .2em 0 .1em; }
h2 { font-size: 1.2em; color: var(--accent); border-bottom: 1px solid var(--line);
     padding-bottom: .2em; margin: 1.8em 0 .6em; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; }
.identity { color: var(--muted); margin: .2em 0; }
.identity b { color: var(--ink); }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: .5em .8em; border-radius: 4px; }
nav { position: sticky; top: 0; background: #fff; padding: .45em 0; font-size: .85em;
      border-bottom: 1px solid var(--line); z-index: 1; }
nav { display: flex; flex-wrap: wrap; gap: .2em 1.1em; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; font-size: .8em; margin: .5em 0; }
th, td { border-bottom: 1px solid var(--line); padding: .28em .6em; text-align: left;
         vertical-align: top; }
th { background: var(--head); font-weight: 600; border-top: 1px solid var(--line); }
th.num { text-align: right; }
th.group { text-align: center; border-left: 1px solid var(--line); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td small { color: var(--muted); }
table.results { font-size: .74em; }
table.results td:not(.num) { min-width: 7.5em; }
table.results td:first-child { min-width: 0; white-space: nowrap; }
tbody tr:hover td { background: #f7f9fc; }
table.kv td:first-child { color: var(--muted); white-space: nowrap; }
table.kv td { text-align: left; white-space: normal; }
img { max-width: 100%; display: block; margin: .4em 0; }
.note { color: var(--muted); font-size: .85em; max-width: 75em; }
ol.findings { padding-left: 1.4em; margin: .4em 0; }
ol.findings li { margin: .45em 0; }
ol.findings .q { font-weight: 600; }
.a { display: inline-block; padding: 0 .45em; border-radius: 3px; font-size: .85em;
     text-transform: uppercase; letter-spacing: .02em; }
.a.yes { background: #d8f0dc; color: #17612a; } .a.no { background: #f8d9d7; color: #8f1d14; }
.a.ns { background: #e8eaee; color: #3b4350; } .a.nt { background: #fff0c2; color: #6b5100; }
.finding { font-weight: 600; margin: .7em 0 .3em; padding: .5em .8em; background: #f4f7fb;
           border-left: 4px solid var(--accent); }
ul.warnings { background: #fff8e1; border-left: 4px solid #e0a800; margin: .6em 0;
              padding: .4em .8em .4em 2em; font-size: .9em; }
details summary { cursor: pointer; color: var(--accent); margin: .4em 0; }
pre { background: #f6f7f9; padding: .8em; font-size: .8em; overflow-x: auto; }
.cols { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.cols > div { min-width: 18em; }
td .ci { color: var(--muted); font-size: .88em; white-space: nowrap; }
table.confusion { font-size: .8em; margin: .3em 0 1em; }
table.confusion caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
table.confusion td { text-align: center; min-width: 4.2em; border: 1px solid #fff; }
table.confusion td small { color: inherit; opacity: .75; }
table.confusion th.corner { font-weight: normal; color: var(--muted); font-size: .9em; }
footer { color: var(--muted); font-size: .8em; margin-top: 3em; }
"""
