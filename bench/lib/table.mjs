// One table: a line per library, a column per (scenario, unit) in the order the
// scenarios produced them. A cell is the median and its ratio to the baseline, or the
// outcome (stack-overflow, timeout, …) when there is no number. Rows with a `table` title
// (a scenario with its own libraries and no baseline, e.g. P4's stores) go in a table of
// their own under that title (formatTables), so the main table stays dense.

export function formatNumber(value, unit) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '-';
  if (unit === 'chains/s' || unit === 'jobs/s' || unit.startsWith('B ') || unit === 'rollbacks') {
    return Math.round(value).toLocaleString('en-US');
  }
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

export function formatRatio(ratio) {
  if (typeof ratio !== 'number' || !Number.isFinite(ratio)) return '';
  if (ratio >= 100) return `${Math.round(ratio).toLocaleString('en-US')}x`;
  if (ratio >= 10) return `${ratio.toFixed(1)}x`;
  return `${ratio.toFixed(2)}x`;
}

function cellOf(row) {
  if (row.cell !== undefined) return row.cell;
  if (typeof row.value !== 'number') return row.outcome ?? '-';
  const ratio = formatRatio(row.ratioToBaseline);
  return `${formatNumber(row.value, row.unit)}${ratio ? ` (${ratio})` : ''}${row.cellSuffix ?? ''}`;
}

export function formatTable(rows, libraries) {
  const visible = rows.filter((r) => !r.hidden);
  const columns = [];
  for (const row of visible) {
    const key = `${row.scenario} ${row.unit}`;
    if (!columns.includes(key)) columns.push(key);
  }
  const names = [...libraries.map((l) => l.name)];
  for (const row of visible) if (!names.includes(row.library)) names.push(row.library);
  const cells = new Map(visible.map((r) => [`${r.library}\u0000${r.scenario} ${r.unit}`, cellOf(r)]));
  // A scenario named after its unit ("P4 jobs/s c=1", jobs/s) does not repeat it.
  const label = (column) => {
    const row = visible.find((r) => `${r.scenario} ${r.unit}` === column);
    return row.scenario.includes(row.unit) ? row.scenario : column;
  };
  const header = ['library', ...columns.map(label)];
  const lines = names
    .filter((name) => visible.some((r) => r.library === name))
    .map((name) => [name, ...columns.map((c) => cells.get(`${name}\u0000${c}`) ?? '')]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cols) => `| ${cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  return [fmt(header), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...lines.map(fmt)].join('\n');
}

/**
 * The main table (rows without `table`; title undefined) and one per `table` title, in
 * the order the rows came; a table without visible rows is left out.
 */
export function formatTables(rows, libraries) {
  const titles = [];
  for (const row of rows) if (!row.hidden && !titles.includes(row.table)) titles.push(row.table);
  titles.sort((a, b) => (a === undefined ? -1 : b === undefined ? 1 : 0));
  return titles.map((title) => ({ title, text: formatTable(rows.filter((r) => r.table === title), libraries) }));
}
