/** parseDuration reads a Go-style duration (`90s`, `10m`, `1h30m`) into milliseconds. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  const rest = text.replace(/(\d+(?:\.\d+)?)(ms|s|m|h)/g, (_, n, u) => {
    total += Number(n) * units[u];
    return '';
  });
  if (rest !== '' || text === '') throw new Error(`${JSON.stringify(text)} is not a duration such as 30s or 10m`);
  return total;
}
