#ifndef DUET_COMMANDS_H
#define DUET_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_plan(int argc, char **argv);

#endif
