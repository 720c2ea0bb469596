/** Types of source-links.mjs (for the tests). */
export function repositoryBase(repository: unknown): string | undefined;
export function sourceLinkTemplate(base: string): string;
export function sourceOptions(manifest: { repository?: unknown }, env: NodeJS.ProcessEnv): { disableSources: boolean; sourceLinkTemplate?: string; gitRevision?: string };
