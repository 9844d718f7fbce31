// Machine set-up checks: the oversubscription warning (an OpenMP spin on a busy 2-core machine made steps several
// times slower).
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "gan/platform.h"

TEST(Platform, OversubscriptionIsWarnedWithTheNumbersAndWhatToDo) {
  EXPECT_EQ(gan::oversubscription_warning(2, 2, 0.1), "");  // an idle machine
  EXPECT_EQ(gan::oversubscription_warning(2, 2, 0.4), "");  // a little background work
  EXPECT_EQ(gan::oversubscription_warning(1, 2, 1.0), "");  // one busy core, one thread
  EXPECT_EQ(gan::oversubscription_warning(8, 16, 7.0), "");
  const std::string busy = gan::oversubscription_warning(2, 2, 1.05);  // another job on one of two cores
  EXPECT_NE(busy.find("other processes keep 1.1 of 2 cores busy"), std::string::npos) << busy;
  EXPECT_NE(busy.find("train.threads to 1"), std::string::npos) << busy;
  const std::string over = gan::oversubscription_warning(4, 2, 0.0);  // more threads than cores
  EXPECT_NE(over.find("4 compute threads on 2 cores"), std::string::npos) << over;
  EXPECT_NE(over.find("train.threads to 2"), std::string::npos) << over;
  EXPECT_NE(gan::oversubscription_warning(4, 2, 0.0, "--threads").find("set --threads to 2"), std::string::npos);
  const std::string full = gan::oversubscription_warning(2, 2, 3.5);  // both cores taken: still one thread
  EXPECT_NE(full.find("train.threads to 1"), std::string::npos) << full;
  EXPECT_EQ(gan::oversubscription_warning(1, 1, 3.0), "");  // one thread waits for no other: slowed, not stalled
}

TEST(Platform, OtherProcessesCpuUseIsTheBusyTicksLessThisProcesssOwn) {
  gan::CpuTicks a{1000, 4000, 300, true}, b = a;
  b.total += 200;  // 2 cores, 100 ticks each
  b.busy += 150;   // of which 150 busy
  b.own += 100;    // 100 of them this process's (its spinning OpenMP threads are not another job)
  EXPECT_DOUBLE_EQ(gan::other_cpu_cores(a, b, 2), 0.5);
  b.own = a.own + 180;  // ticks are sampled: own may read above busy, which is then nobody else
  EXPECT_DOUBLE_EQ(gan::other_cpu_cores(a, b, 2), 0.0);
  b.ok = false;
  EXPECT_EQ(gan::other_cpu_cores(a, b, 2), -1);
  // On this machine now: a share of its cores (other tests may be running alongside).
  const double busy = gan::other_cpu_use(0.05);
  EXPECT_GE(busy, 0.0);
  EXPECT_LE(busy, std::thread::hardware_concurrency() + 0.01);
}
