import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layer order documented in docs/design.md, checked against every relative import in src/: a module imports only
 * from its own layer or the layers below. The block lists layers top to bottom, each line one layer of one or more
 * paths (a folder ends with '/').
 */
function documentedLayers(): string[][] {
  const design = readFileSync('docs/design.md', 'utf8');
  const section = design.slice(design.indexOf('## Layers'));
  const block = section.match(/```\n([\s\S]*?)```/)![1];
  return block
    .split('\n')
    .map((line) => line.split(/\s+/).filter((word) => word.startsWith('src/')))
    .filter((paths) => paths.length > 0)
    .reverse();
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('layers', () => {
  const layers = documentedLayers();
  const layerOf = (file: string): number => {
    const path = relative('.', file).split('\\').join('/');
    return layers.findIndex((paths) => paths.some((p) => (p.endsWith('/') ? path.startsWith(p) : path === p)));
  };

  it('every file in src/ belongs to a documented layer', () => {
    expect(layers.length).toBeGreaterThan(8);
    expect(sourceFiles('src').filter((f) => layerOf(f) < 0)).toEqual([]);
  });

  it('every relative import in src/ goes to the same layer or one below (no arrow runs back up)', () => {
    const upward: string[] = [];
    for (const file of sourceFiles('src')) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^(?:import|export)[^'"]*from\s+'(\.[^']+)'/gm)) {
        const target = normalize(join(dirname(file), m[1])).replace(/\.js$/, '.ts');
        if (layerOf(target) > layerOf(file)) upward.push(`${file} imports ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
