/** Types of source-links.mjs (for the tests). */
export function repositoryBase(repository: unknown): string | undefined;
export function sourceLinkTemplate(base: string): string;
export function ciRepository(env: NodeJS.ProcessEnv): string | undefined;
export function sourceOptions(manifest: { repository?: unknown }, env: NodeJS.ProcessEnv, originUrl?: string): { disableSources: boolean; sourceLinkTemplate?: string; gitRevision?: string };
